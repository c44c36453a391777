"""Configuration: frozen dataclasses, the named presets and one uniform way to override any field.

This module is a torch-free leaf: a configuration is built and validated before torch or any data
loads, so a typo fails in milliseconds. Defaults live here (and, for what differs between methods,
in each method's registry entry); CLI flags default to ``None`` and only override what was given.

Every field carries a one-line help text (``field(metadata={"help": ...})``) from which
``ssdd settings`` and ``docs/config.md`` are generated. Any field can be set with
``--set key=value`` (repeatable) or a TOML file (``--config run.toml``); :func:`make_config`
rejects unknown keys and values of the wrong type.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .views import DEFAULT_VIEWS, parse_views

PRESETS = ("paper", "cpu")
C = TypeVar("C")


def setting(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse/typer naming
    """A dataclass field with its default and a one-line help text."""
    return field(default=default, metadata={"help": help})


# ---------------------------------------------------------------------------------------------
# the three configurations


@dataclass(frozen=True)
class TeacherConfig:
    """Barlow Twins teacher training (defaults: solo-learn's CIFAR recipe, method.md §4.3)."""

    arch: str = setting("resnet18", "backbone architecture (see `ssdd models`)")
    num_steps: int = setting(195_000, "optimisation steps (1000 epochs of 50k images at batch 256)")
    batch_size: int = setting(256, "images per step")
    optimizer: str = setting("lars", "lars, adamw or sgd")
    lr: float = setting(0.3, "base learning rate (LARS: per 256 images)")
    weight_decay: float = setting(1e-4, "weight decay of the weight matrices")
    warmup_steps: int = setting(1950, "linear warm-up steps before the cosine decay")
    projector_dim: int = setting(2048, "hidden and output width of the 3-layer projector")
    lambd: float = setting(0.0051, "Barlow Twins off-diagonal weight")
    scale_loss: float = setting(0.1, "Barlow Twins loss scale")
    amp: bool | None = setting(False, "bf16 autocast; none = only where bf16 is fast (AMX/AVX512-BF16 CPUs, CUDA)")
    max_minutes: float | None = setting(None, "stop training after this wall time (minutes)")
    seed: int = setting(0, "root random seed")

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(self.num_steps >= 1, "steps", "≥ 1", self.num_steps)
        _check(self.batch_size >= 2, "batch-size", "≥ 2 for Barlow Twins", self.batch_size)
        _check(self.lr > 0, "lr", "> 0", self.lr)
        _check(self.optimizer.lower() in ("lars", "adamw", "sgd"), "optimizer", "lars, adamw or sgd", self.optimizer)
        _check(self.max_minutes is None or self.max_minutes > 0, "minutes", "> 0", self.max_minutes)
        _check(self.projector_dim >= 1 and self.warmup_steps >= 0, "projector_dim/warmup_steps", "≥ 1 / ≥ 0",
               (self.projector_dim, self.warmup_steps))


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings of every method (method.md §5.6, §6.5); method-specific rules live in its entry."""

    method: str = setting("boost", "distillation method: boost, krr_st or random (`ssdd methods`)")
    budget: int = setting(100, "storage budget N in image-equivalents (pixel methods: number of images)")
    num_steps: int = setting(30_000, "outer steps")
    batch_size: int = setting(1024, "real images per outer step")
    lr: float = setting(1e-3, "AdamW learning rate of every learnable tensor (images, targets, bases, coefficients)")
    lr_targets: float | None = setting(None, "separate learning rate of the target side (none: same as lr)")
    lr_final_factor: float = setting(0.0, "the learning rate decays linearly to lr × this factor")
    grad_clip: float = setting(0.0, "clip the global gradient norm of the outer update (0 = off)")
    pool_arch: str = setting("convnet3", "architecture of the model pool")
    pool_size: int = setting(10, "number of pool models")
    pool_online_steps: int = setting(1000, "online updates before a pool model is re-initialised")
    pool_lr: float = setting(0.1, "SGD learning rate of the pool models")
    pool_momentum: float = setting(0.9, "SGD momentum of the pool models")
    pool_weight_decay: float = setting(1e-3, "SGD weight decay of the pool models")
    pool_reset_bug: bool = setting(False, "reproduce upstream's pool counter quirk Q1 (method.md §5.4)")
    ridge: float = setting(1e-6, "KRR ridge λ, relative to tr(K_ss)")
    raw_space: bool = setting(False, "KRR-ST quirk Q2: keep distilled images in raw [0,1] space")
    bases: bool = setting(True, "store images and targets as bases + coefficients (boost)")
    views: tuple[str, ...] = setting(DEFAULT_VIEWS, "predefined views, identity first (boost)")
    approx: bool = setting(True, "replace the views' targets by approximation networks (boost)")
    num_images: int | None = setting(None, "distilled images m (none: from the budget)")
    image_rank: int | None = setting(None, "image bases U (none: from the budget)")
    repr_rank: int | None = setting(None, "representation bases V (none: from the budget)")
    sizing: str = setting("paper", "how the budget is split when m, U, V are not given: paper (U = V = 2N, m ≤ N; "
                                   "method.md §6.6) or images (U = V = N, every remaining image-equivalent buys "
                                   "images: about a thousand at 32 px)")
    basis_size: int | None = setting(None, "side of the image bases (none: half the image side)")
    approx_hidden: int = setting(4, "hidden width k of the approximation networks")
    approx_steps: int = setting(500, "Adam steps fitting each approximation network")
    approx_lr: float = setting(1e-2, "Adam learning rate of the approximation networks")
    approx_mode: str = setting("after", "after: fit the networks once distillation ends (paper); joint: fit at "
                               "initialisation and train them in the outer loop")
    init: str = setting("pca", "basis initialisation: pca or random")
    orthonormalise_every: int = setting(0, "re-orthonormalise the image and representation bases by QR every K outer "
                                           "steps, coefficients (and joint approximation networks) changed so that "
                                           "every pair stays the same; 0 = never (paper: bases are free after the "
                                           "PCA initialisation)")
    freeze_means: bool = setting(False, "keep the PCA means fixed")
    select: str = setting("uniform", "which real images initialise the set: uniform (at random, paper) or kmeans (the training "
                          "image nearest each of m k-means centroids of the teacher's representations, a coreset)")
    targets_of: str = setting("real", "boost initial targets: the teacher's representations of the real images "
                              "(real, paper) or of the images the bases decode, view by view (decoded: every pair "
                              "is one the teacher itself produces)")
    image_fit_steps: int = setting(0, "boost: after the initialisation, Adam steps (at lr) fitting the image coding so "
                                      "that the teacher's representation of every decoded (viewed) image matches the "
                                      "target it is paired with; targets unchanged (0 = off, the paper)")
    image_fit_targets: str = setting("exact", "boost, with image_fit_steps and approximation networks: what the fit "
                                     "aims at for the non-identity views: exact (the view targets set at "
                                     "initialisation) or stored (what the set delivers: the networks' predictions; "
                                     "the networks are then fitted before the image fit and are part of the set from "
                                     "the start, trained by any outer steps as with approx_mode=joint)")
    aug_in_krr: bool = setting(True, "every view enters the KRR support set (else identity only)")
    amp: bool | None = setting(False, "bf16 autocast of the pool ConvNets; none = only where bf16 is fast")
    teacher_cache: int = setting(0, "K fixed crop+flip views of every real image whose teacher representations are "
                                    "computed once, cached, and looked up instead of a teacher forward per step "
                                    "(0 = a teacher forward every step, the reference semantics)")
    max_minutes: float | None = setting(None, "stop the outer loop after this wall time (minutes)")
    seed: int = setting(0, "root random seed")

    def __post_init__(self) -> None:
        from .methods.registry import get_method

        method = get_method(self.method)
        object.__setattr__(self, "method", method.name)
        object.__setattr__(self, "views", parse_views(self.views))
        _check_numbers(self)
        checks = [
            ("budget", self.budget > 0, "a positive integer"),
            ("steps", self.num_steps >= 0, "≥ 0"),
            ("batch-size", self.batch_size >= 1, "≥ 1"),
            ("lr", self.lr > 0, "> 0"),
            ("lr_targets", self.lr_targets is None or self.lr_targets > 0, "> 0"),
            ("pool_size", self.pool_size >= 1, "≥ 1"),
            ("pool_online_steps", self.pool_online_steps >= 1, "≥ 1"),
            ("ridge", self.ridge >= 0, "≥ 0"),
            ("grad_clip", self.grad_clip >= 0, "≥ 0"),
            ("approx_hidden", self.approx_hidden >= 1, "≥ 1"),
            ("approx_steps", self.approx_steps >= 0, "≥ 0"),
            ("lr_final_factor", 0 <= self.lr_final_factor <= 1, "in [0, 1]"),
            ("num-images", self.num_images is None or self.num_images >= 1, "≥ 1"),
            ("image-rank", self.image_rank is None or self.image_rank >= 1, "≥ 1"),
            ("repr-rank", self.repr_rank is None or self.repr_rank >= 1, "≥ 1"),
            ("basis_size", self.basis_size is None or self.basis_size >= 1, "≥ 1"),
            ("minutes", self.max_minutes is None or self.max_minutes > 0, "> 0"),
            ("teacher_cache", 0 <= self.teacher_cache <= 64, "in [0, 64]"),
            ("orthonormalise_every", self.orthonormalise_every >= 0, "≥ 0"),
            ("image_fit_steps", self.image_fit_steps >= 0, "≥ 0"),
        ]
        for name, ok, rule in checks:
            _check(ok, name, rule, getattr(self, _FIELD_OF.get(name, name.replace("-", "_"))))
        _check(self.approx_mode in ("after", "joint"), "approx_mode", "after or joint", self.approx_mode)
        _check(self.image_fit_targets in ("exact", "stored"), "image_fit_targets", "exact or stored",
               self.image_fit_targets)
        from .storage import SIZINGS

        _check(self.sizing in SIZINGS, "sizing", " or ".join(SIZINGS), self.sizing)
        _check(self.init in ("pca", "random"), "init", "pca or random", self.init)
        _check(self.targets_of in ("real", "decoded"), "targets_of", "real or decoded", self.targets_of)
        _check(self.select in ("uniform", "kmeans"), "select", "uniform or kmeans", self.select)
        for on, what in ((self.targets_of == "decoded", "targets_of=decoded targets the images the bases decode"),
                         (self.image_fit_steps, "image_fit_steps fits the image bases and coefficients"),
                         (self.orthonormalise_every, "orthonormalise_every re-orthonormalises bases")):
            if on and not self.bases:
                raise ConfigError(f"{what}; it needs bases (--method boost)")
        method.validate(self)


@dataclass(frozen=True)
class EvalConfig:
    """Pretraining on a distilled set, then linear probing, fine-tuning or k-NN (method.md §7)."""

    archs: tuple[str, ...] = setting(("convnet3",), "architectures pretrained on each set (see `ssdd models`)")
    protocols: tuple[str, ...] = setting(("linear",), "linear (frozen features), finetune (whole model) and/or knn")
    pretrain_epochs: int = setting(1000, "pretraining epochs over the pairs (0 = no pretraining)")
    pretrain_batch_size: int = setting(256, "pretraining batch size")
    pretrain_lr: float = setting(0.1, "pretraining SGD learning rate")
    pretrain_momentum: float = setting(0.9, "pretraining SGD momentum")
    pretrain_weight_decay: float = setting(1e-3, "pretraining SGD weight decay")
    full_epochs: int = setting(20, "pretraining epochs of the `full` baseline (the whole source)")
    probe_steps: int = setting(5000, "linear-probe SGD steps")
    probe_batch_size: int = setting(512, "linear-probe batch size")
    probe_lr: float = setting(0.2, "linear-probe learning rate (cosine decay)")
    finetune_steps: int = setting(0, "fine-tuning steps (0: 10,000 for CIFAR/Tiny-ImageNet targets, else 5,000)")
    finetune_batch_size: int = setting(256, "fine-tuning batch size")
    finetune_lr: float = setting(0.01, "fine-tuning SGD learning rate (cosine decay)")
    finetune_weight_decay: float = setting(5e-4, "fine-tuning SGD weight decay")
    knn_k: int = setting(200, "k-NN neighbours (cosine similarity)")
    knn_temperature: float = setting(0.1, "k-NN vote temperature")
    max_train_images: int = setting(0, "probe on this many target training images (0: all; stratified)")
    max_test_images: int = setting(0, "test on this many target test images (0: all; stratified)")
    num_seeds: int = setting(1, "independent runs, paired across rows")
    amp: bool | None = setting(False, "bf16 autocast; none = only where bf16 is fast")
    seed: int = setting(0, "first seed (runs use seed, seed+1, ...)")

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(self.pretrain_epochs >= 0, "epochs", "≥ 0", self.pretrain_epochs)
        for name in ("probe_steps", "num_seeds", "pretrain_batch_size", "probe_batch_size", "finetune_batch_size",
                     "knn_k", "full_epochs"):
            _check(getattr(self, name) >= 1, name.replace("num_", "").replace("_", "-"), "≥ 1", getattr(self, name))
        for name in ("finetune_steps", "max_train_images", "max_test_images"):
            _check(getattr(self, name) >= 0, name, "≥ 0", getattr(self, name))
        _check(self.pretrain_lr > 0 and self.probe_lr > 0 and self.finetune_lr > 0, "pretrain_lr/probe_lr/finetune_lr",
               "> 0", (self.pretrain_lr, self.probe_lr, self.finetune_lr))
        _check(self.knn_temperature > 0, "knn_temperature", "> 0", self.knn_temperature)
        _check(len(self.archs) >= 1, "arch", "at least one architecture", self.archs)
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        _check(not unknown and len(self.protocols) >= 1, "protocol", f"one or more of {', '.join(PROTOCOLS)}",
               ",".join(self.protocols))

    @property
    def arch(self) -> str:
        """The first architecture (single-architecture helpers use it)."""
        return self.archs[0]


#: evaluation protocols (method.md §7.2, §7.3; k-NN as SSL libraries report it)
PROTOCOLS = ("linear", "finetune", "knn")


#: flag name in an error message → field name, where they differ
_FIELD_OF = {"steps": "num_steps", "batch-size": "batch_size", "minutes": "max_minutes"}


def _check(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        flag = f"--{name}" if "-" in name or name in ("budget", "steps", "lr", "minutes", "epochs", "seeds", "arch", "protocol") else name
        raise ConfigError(f"{flag} must be {rule}, got {value}")


def _check_numbers(config: Any) -> None:
    """Every float setting is finite (a NaN learning rate would only fail thousands of steps later)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")


# ---------------------------------------------------------------------------------------------
# presets

# Every departure of the cpu preset from method.md is listed in docs/cpu-preset.md.
TEACHER_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(arch="convnet4_s", num_steps=4000, optimizer="adamw", lr=2e-3, weight_decay=1e-4,
                warmup_steps=200, projector_dim=1024, scale_loss=1.0, amp=None),
}
#: distillation settings shared by every method; each method's entry adds its own (steps, lr, ...)
DISTILL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(batch_size=256, pool_arch="convnet3_s", pool_size=4, pool_online_steps=100, amp=None),
}
EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(archs=("convnet3_s",), amp=None),
}
#: 64-px sources use the 4-block nets (method.md §5.6)
WIDE_POOL = {"convnet3": "convnet4", "convnet3_s": "convnet4_s"}


def check_preset(preset: str) -> str:
    """Validate a preset name."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; use {' or '.join(PRESETS)}")
    return preset


def teacher_config(preset: str = "paper", **overrides: Any) -> TeacherConfig:
    """Teacher config: preset values, then every override that is not ``None``."""
    return make_config(TeacherConfig, {**TEACHER_PRESETS[check_preset(preset)], **_given(overrides)})


def eval_config(preset: str = "paper", **overrides: Any) -> EvalConfig:
    """Evaluation config: preset values, then every override that is not ``None``."""
    return make_config(EvalConfig, {**EVAL_PRESETS[check_preset(preset)], **_given(overrides)})


def distill_config(method: str = "boost", preset: str = "paper", image_size: int = 32, **overrides: Any) -> DistillConfig:
    """Distillation config: shared preset values, the method's own, the 64-px pool, then the overrides.

    ``image_size`` matters only for size-dependent preset values (4-block pools at 64 px and above).
    """
    from .methods.registry import get_method

    entry = get_method(method)
    values = {**DISTILL_PRESETS[check_preset(preset)], **entry.presets.get(preset, {})}
    if image_size >= 64:
        pool = values.get("pool_arch", "convnet3")
        values["pool_arch"] = WIDE_POOL.get(pool, pool)
        values.update(entry.presets.get(f"{preset}@64px", {}))
    return make_config(DistillConfig, {**values, **_given(overrides), "method": entry.name})


def _given(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if v is not None}


# ---------------------------------------------------------------------------------------------
# building from dicts, `--set key=value` and TOML files


def make_config(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build ``cls`` from ``values``, rejecting unknown keys and values of the wrong type.

    Raises:
        ConfigError: an unknown key (with the closest known one), a wrong type or a value out of range.
    """
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    typed: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; see `ssdd settings {_COMMAND[cls.__name__]}`"
            raise ConfigError(f"unknown {_COMMAND[cls.__name__]} setting {key!r}{hint}")
        typed[key] = _coerce(key, str(known[key].type), value)
    return cls(**typed)


_COMMAND = {"TeacherConfig": "teacher", "DistillConfig": "distill", "EvalConfig": "evaluate"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _coerce(key: str, kind: str, value: Any) -> Any:
    """Convert ``value`` (typed, or a string from ``--set``) to the field type ``kind``."""
    optional = kind.endswith("| None")
    base = kind.replace("| None", "").strip()
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"setting {key!r} cannot be none")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            return int(value.replace("_", "")) if isinstance(value, str) else int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r} must be {_TYPE_WORDS.get(base, base)}, got {value!r}") from None


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "tuple[str, ...]": "a comma-separated list"}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["lr=0.01", "views=identity,rot90"]`` → ``{"lr": "0.01", "views": "identity,rot90"}``.

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}; e.g. --set pool_size=4")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def load_config_file(path: str | Path, section: str) -> dict[str, Any]:
    """Settings for ``section`` (``teacher``, ``distill``, ``evaluate``) from a TOML file.

    The file holds either a table per command (``[distill]``) or the keys of one command at the top level.

    Raises:
        ConfigError: unreadable file or invalid TOML.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError("--config needs Python 3.11+ or `pip install tomli`") from None
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({str(exc).splitlines()[0]})") from None
    tables = {k for k, v in data.items() if isinstance(v, dict)}
    if tables and tables <= set(_COMMAND.values()):
        return dict(data.get(section, {}))
    if tables:
        unknown = sorted(tables - set(_COMMAND.values()))
        raise ConfigError(f"{path}: unexpected table(s) {unknown}; use [teacher], [distill] or [evaluate]")
    return dict(data)


# ---------------------------------------------------------------------------------------------
# records and documentation


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


@dataclass(frozen=True)
class SettingDoc:
    """One documented setting: name, type, default and help."""

    name: str
    kind: str
    default: Any
    help: str


def describe(cls: type) -> list[SettingDoc]:
    """Every field of a config class with its type, default and help text."""
    out = []
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        out.append(SettingDoc(f.name, str(f.type), list(default) if isinstance(default, tuple) else default,
                              f.metadata.get("help", "")))
    return out


CONFIG_CLASSES: dict[str, type] = {"teacher": TeacherConfig, "distill": DistillConfig, "evaluate": EvalConfig}


def settings_rows(command: str) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` strings of every setting of ``command``."""
    rows = []
    for doc in describe(CONFIG_CLASSES[command]):
        default = ",".join(doc.default) if isinstance(doc.default, list) else ("none" if doc.default is None else doc.default)
        if isinstance(default, bool):
            default = str(default).lower()
        rows.append((doc.name, doc.kind.replace(" | None", " or none"), str(default), doc.help))
    return rows


def settings_markdown(command: str) -> str:
    """The settings of ``command`` as a Markdown table (the source of docs/config.md)."""
    lines = [f"## ssdd {command}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | `{d}` | {h} |" for k, t, d, h in settings_rows(command)]
    return "\n".join(lines)

__all__ = ["CONFIG_CLASSES", "DistillConfig", "EvalConfig", "PRESETS", "TeacherConfig", "describe", "distill_config",
           "eval_config", "load_config_file", "make_config", "parse_assignments", "replace",
           "settings_markdown", "settings_rows", "teacher_config", "to_dict"]
