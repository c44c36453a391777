"""Frozen configuration dataclasses and the named presets (``paper`` and ``cpu``).

Defaults live here and only here: CLI flags default to ``None`` and are merged over a preset with
:func:`distill_config` / :func:`teacher_config` / :func:`eval_config`. Every artifact records its
config with :func:`to_dict`; :func:`from_dict` rejects unknown keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from .augment import DEFAULT_VIEWS, parse_views
from .errors import ConfigError
from .teacher import TeacherConfig

METHOD_ALIASES = {"krr-st": "krr_st", "krrst": "krr_st", "krr_st": "krr_st", "boost": "boost"}
PRESETS = ("paper", "cpu")


def canonical_method(name: str) -> str:
    """``krr-st``/``krrst``/``krr_st`` → ``krr_st``; ``boost`` → ``boost``."""
    key = METHOD_ALIASES.get(name.lower())
    if key is None:
        raise ConfigError(f"unknown method {name!r}; use boost or krr-st")
    return key


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings shared by KRR-ST and Boost (method.md §5.6, §6.5)."""

    method: str = "boost"
    budget: int = 100  # image-equivalents (KRR-ST: number of images)
    num_steps: int = 30_000  # outer steps
    batch_size: int = 1024  # real images per outer step
    lr: float = 1e-3  # AdamW lr of every learnable tensor (images, targets, bases, coefficients)
    lr_targets: float | None = None  # separate lr for the target side (None: same as lr)
    lr_final_factor: float = 0.0  # linear decay of the lr to this factor over num_steps
    grad_clip: float = 0.0  # global grad-norm clip of the outer update (0 = off)
    pool_arch: str = "convnet3"
    pool_size: int = 10
    pool_online_steps: int = 1000  # online updates before a pool model is re-initialised
    pool_lr: float = 0.1
    pool_momentum: float = 0.9
    pool_weight_decay: float = 1e-3
    pool_reset_bug: bool = False  # reproduce upstream quirk Q1
    ridge: float = 1e-6  # λ relative to tr(K_ss)
    raw_space: bool = False  # KRR-ST quirk Q2: distilled images in raw [0,1] space
    # Boost parameterisation
    bases: bool = True
    views: tuple[str, ...] = DEFAULT_VIEWS
    approx: bool = True
    num_images: int | None = None  # m (None: chosen from the budget)
    image_rank: int | None = None  # U
    repr_rank: int | None = None  # V
    basis_size: int | None = None  # side of the image bases (None: H/2)
    approx_hidden: int = 4  # k
    approx_steps: int = 500
    approx_lr: float = 1e-2
    approx_mode: str = "after"  # after: fit h_a once distillation ends (paper); joint: fit at init, then train in the loop
    init: str = "pca"  # pca | random
    freeze_means: bool = False
    aug_in_krr: bool = True  # views enter the KRR support set (else only the pool's training)
    amp: bool | None = False  # bf16 autocast for the pool ConvNets (None: where bf16 is fast)
    max_minutes: float | None = None  # stop the outer loop after this wall time
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", canonical_method(self.method))
        object.__setattr__(self, "views", parse_views(self.views))
        checks = [
            ("budget", self.budget > 0, "a positive integer"),
            ("num_steps", self.num_steps >= 0, "≥ 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"),
            ("lr", self.lr > 0, "> 0"),
            ("pool_size", self.pool_size >= 1, "≥ 1"),
            ("pool_online_steps", self.pool_online_steps >= 1, "≥ 1"),
            ("ridge", self.ridge >= 0, "≥ 0"),
            ("approx_hidden", self.approx_hidden >= 1, "≥ 1"),
            ("lr_final_factor", 0 <= self.lr_final_factor <= 1, "in [0, 1]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                flag = "--" + name.replace("_", "-").replace("num-steps", "steps")
                raise ConfigError(f"{flag} must be {rule}, got {getattr(self, name)}")
        if self.approx_mode not in ("after", "joint"):
            raise ConfigError(f"--approx-mode must be after or joint, got {self.approx_mode!r}")
        if self.init not in ("pca", "random"):
            raise ConfigError(f"--init must be pca or random, got {self.init!r}")
        if self.num_images is not None and self.num_images < 1:
            raise ConfigError(f"--num-images must be ≥ 1, got {self.num_images}")
        if self.raw_space and self.method != "krr_st":
            raise ConfigError("--krrst-raw-space reproduces a KRR-ST quirk; it applies to --method krr-st only")
        if self.method == "krr_st" and (len(self.views) > 1 or self.bases):
            raise ConfigError("krr-st stores plain images and targets; --views and bases apply to --method boost")


@dataclass(frozen=True)
class EvalConfig:
    """Pretraining on a distilled set and linear probing (method.md §7.1, §7.2)."""

    arch: str = "convnet3"
    pretrain_epochs: int = 1000
    pretrain_batch_size: int = 256
    pretrain_lr: float = 0.1
    pretrain_momentum: float = 0.9
    pretrain_weight_decay: float = 1e-3
    probe_steps: int = 5000
    probe_batch_size: int = 512
    probe_lr: float = 0.2
    num_seeds: int = 1
    amp: bool | None = False  # None: bf16 where it is fast
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("pretrain_epochs", "probe_steps", "num_seeds"):
            if getattr(self, name) < (0 if name == "pretrain_epochs" else 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


# Every departure of the cpu preset from method.md is listed in docs/cpu-preset.md.
_TEACHER_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(arch="convnet4_s", num_steps=4000, optimizer="adamw", lr=2e-3, weight_decay=1e-4,
                warmup_steps=200, projector_dim=1024, scale_loss=1.0, amp=None),
}
_DISTILL_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "krr_st": dict(num_steps=160_000, lr=1e-4, lr_final_factor=1e-3, bases=False, views=("identity",)),
        "boost": dict(num_steps=30_000, lr=1e-3, lr_final_factor=0.0),
    },
    "cpu": {
        "krr_st": dict(num_steps=1500, batch_size=256, lr=1e-3, lr_final_factor=1e-3, bases=False,
                       views=("identity",), pool_arch="convnet3_s", pool_size=4, pool_online_steps=100, amp=None),
        "boost": dict(num_steps=1500, batch_size=256, lr=1e-3, lr_final_factor=0.0, pool_arch="convnet3_s",
                      pool_size=4, pool_online_steps=100, amp=None),
    },
}
_EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(arch="convnet3_s", amp=None),
}
#: 64-px sources use the 4-block nets (method.md §5.6)
_WIDE_POOL = {"convnet3": "convnet4", "convnet3_s": "convnet4_s"}


def _check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; use {' or '.join(PRESETS)}")
    return preset


def _clean(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if v is not None}


def teacher_config(preset: str = "paper", **overrides: Any) -> TeacherConfig:
    """Teacher config: preset values, then every override that is not ``None``."""
    return TeacherConfig(**{**_TEACHER_PRESETS[_check_preset(preset)], **_clean(overrides)})


def distill_config(method: str = "boost", preset: str = "paper", image_size: int = 32, **overrides: Any) -> DistillConfig:
    """Distillation config for ``method``: preset values, 64-px pool for 64-px data, then overrides."""
    key = canonical_method(method)
    values = dict(_DISTILL_PRESETS[_check_preset(preset)][key])
    if image_size >= 64:
        values["pool_arch"] = _WIDE_POOL.get(values.get("pool_arch", "convnet3"), values.get("pool_arch", "convnet3"))
        if preset == "paper" and key == "krr_st":
            values["lr"] = 1e-5
    return DistillConfig(method=key, **{**values, **_clean(overrides)})


def eval_config(preset: str = "paper", **overrides: Any) -> EvalConfig:
    """Evaluation config: preset values, then overrides."""
    return EvalConfig(**{**_EVAL_PRESETS[_check_preset(preset)], **_clean(overrides)})


T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config, rejecting unknown keys (e.g. from a newer ssdd)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; written by a newer ssdd?")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


__all__ = ["DistillConfig", "EvalConfig", "TeacherConfig", "distill_config", "eval_config", "teacher_config",
           "to_dict", "from_dict", "replace", "canonical_method", "PRESETS"]
