"""The distillation loop shared by KRR-ST and Boost (method.md §5.5, §6.5).

Per outer step: decode the support set (every view of every distilled image, with its target),
take a pool model, compute its features (eval mode) of the support set and of an augmented real
batch, predict the teacher's representations of the real batch by kernel ridge regression, and
descend the MSE with AdamW on every learnable tensor; then the pool model takes its online step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import augment
from ..config import DistillConfig, to_dict
from ..data.base import ImageDataset
from ..device import autocast, eval_mode
from ..engine import fit, make_optimizer, make_schedule
from ..errors import ConfigError
from ..losses import mse
from ..reporting import NullReporter, ProgressReporter
from ..rng import stream
from ..storage import BoostSize, auto_size, boost_shapes, storage_report
from ..teacher import Teacher
from .init import fit_approx_networks, init_bases, init_pixels, real_subset
from .krr import krr_predict
from .pool import ModelPool
from .synthetic import SyntheticSet

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """A finished distillation: the set, its bundle tensors/metadata and diagnostics."""

    synthetic: SyntheticSet
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def plan_size(config: DistillConfig, dataset: ImageDataset, repr_dim: int) -> BoostSize:
    """``m, U, V, k`` for the config and budget (KRR-ST: ``m = N``)."""
    if config.method == "krr_st":
        m = config.num_images or config.budget
        if m > config.budget:
            raise ConfigError(f"krr-st stores m images and --budget {config.budget} allows at most {config.budget}")
        return BoostSize(m, 0, 0, 0, dataset.image_size)
    return auto_size(
        config.budget, channels=dataset.num_channels, image_size=dataset.image_size, repr_dim=repr_dim,
        views=config.views, bases=config.bases, approx=config.approx, basis_size=config.basis_size,
        approx_hidden=config.approx_hidden, num_images=config.num_images, image_rank=config.image_rank,
        repr_rank=config.repr_rank,
    )


def planned_storage(config: DistillConfig, dataset: ImageDataset, repr_dim: int) -> Any:
    """Storage report of the planned set (printed before any work starts)."""
    size = plan_size(config, dataset, repr_dim)
    c, s = dataset.num_channels, dataset.image_size
    if config.method == "krr_st":
        shapes = {"images": (size.num_images, c, s, s), "targets": (size.num_images, repr_dim)}
    else:
        shapes = boost_shapes(size, channels=c, repr_dim=repr_dim, views=config.views, bases=config.bases,
                              approx=config.approx, image_size=s)
    return storage_report(shapes, image_shape=(c, s, s), method=config.method, num_images=size.num_images)


class RealBatches:
    """Device-resident real images, shuffled without replacement, augmented in batches (§5.3)."""

    def __init__(self, images: torch.Tensor, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 seed: int, device: torch.device) -> None:
        self.images = images.to(device)
        self.batch_size = min(batch_size, images.shape[0])
        self.mean, self.std = mean, std
        self.order_gen = stream(seed, "real-order", "cpu")
        self.aug_gen = stream(seed, "real-augment", device)
        self._queue: list[torch.Tensor] = []

    def next(self) -> torch.Tensor:
        """A normalised, crop+flip-augmented batch ``(b, C, H, W)``."""
        if not self._queue:
            perm = torch.randperm(self.images.shape[0], generator=self.order_gen)
            usable = perm.shape[0] - perm.shape[0] % self.batch_size
            self._queue = list(perm[:usable].split(self.batch_size))
        idx = self._queue.pop(0).to(self.images.device)
        x = augment.crop_flip(augment.to_float(self.images[idx]), self.aug_gen)
        return augment.normalize(x, self.mean, self.std)


def distill(
    dataset: ImageDataset,
    teacher: Teacher,
    config: DistillConfig,
    *,
    device: torch.device,
    train_reprs: torch.Tensor | None = None,
    reporter: ProgressReporter | None = None,
) -> DistillResult:
    """Distil ``dataset`` with ``config.method`` against ``teacher``.

    Args:
        dataset: the source data (uint8 images; labels unused).
        teacher: frozen teacher with the source normalisation.
        config: method and hyper-parameters.
        device: where to run.
        train_reprs: teacher representations of every training image (Boost's PCA; computed when
            missing).
        reporter: progress sink.

    Raises:
        ConfigError: a configuration over budget or inconsistent with the data.
    """
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    if teacher.image_size != dataset.image_size:
        raise ConfigError(
            f"the teacher was trained at {teacher.image_size} px but the dataset is {dataset.image_size} px; "
            "pass --image-size to match or train a teacher at this size"
        )
    mean, std = dataset.mean, dataset.std
    size = plan_size(config, dataset, teacher.repr_dim)
    planned = planned_storage(config, dataset, teacher.repr_dim)
    log.info("planned storage: %s (cost %.2f ≤ budget %d)", planned.describe(), planned.cost, config.budget)
    teacher.to(device)
    init_gen = stream(config.seed, "init", "cpu")
    chosen = real_subset(dataset.train_images, size.num_images, init_gen)
    init_stats: dict[str, float] = {}
    if config.method == "krr_st":
        raw = augment.to_float(dataset.train_images[chosen]).to(device)
        synth = init_pixels(raw, teacher, config, mean, std)
    else:
        if train_reprs is None:
            train_reprs = teacher.represent(dataset.train_images, reporter=reporter)
        synth, init_stats = init_bases(dataset.train_images.to(device), train_reprs.to(device), chosen.to(device),
                                       teacher, size, config, mean, std, init_gen)
    approx_fit: dict[str, dict[str, float]] = {}
    joint = config.method == "boost" and config.approx and config.approx_mode == "joint" and len(synth.views) > 1
    if joint:
        # The stored parameterisation is trained directly: the networks are fitted to the teacher's
        # view targets at initialisation and then optimised in the outer loop with everything else.
        synth, init_fit = fit_approx_networks(synth.cpu(), config.approx_hidden, config.approx_steps,
                                              config.approx_lr, config.seed)
        init_stats.update({f"approx_init_{v}": r["relative_error"] for v, r in init_fit.items()})
    synth.to(device)

    pool = ModelPool(
        arch=config.pool_arch, image_size=dataset.image_size, out_dim=teacher.repr_dim, size=config.pool_size,
        online_steps=config.pool_online_steps, lr=config.pool_lr, momentum=config.pool_momentum,
        weight_decay=config.pool_weight_decay, reset_bug=config.pool_reset_bug, seed=config.seed,
        device=device, amp=config.amp,
    )
    with torch.no_grad():
        xs0, ys0 = synth.support()
    pool.warm_up(xs0, ys0, reporter)

    image_params = [p for n, p in synth.named_parameters() if p.requires_grad and n.startswith("image")]
    target_params = [p for n, p in synth.named_parameters() if p.requires_grad and not n.startswith("image")]
    groups = [{"params": image_params, "lr": config.lr},
              {"params": target_params, "lr": config.lr_targets or config.lr}]
    opt = make_optimizer("adamw", [g for g in groups if g["params"]], config.lr, weight_decay=0.0)
    sched = make_schedule(opt, "linear", max(config.num_steps, 1), final_factor=config.lr_final_factor)
    real = RealBatches(dataset.train_images, config.batch_size, mean, std, config.seed, device)
    identity_only = ("identity",)
    current = {"model": 0}

    def step(_: int) -> torch.Tensor:
        support_views = synth.views if config.aug_in_krr else identity_only
        xs, ys = synth.support(support_views)
        idx = pool.sample()
        current["model"] = idx
        model = pool.models[idx]
        xr = real.next().contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            target = teacher.represent_normalized(xr, config.amp)
        with eval_mode(model), autocast(device, config.amp):
            with torch.no_grad():
                feat_real = model.embed(xr).float()
            feat_syn = model.embed(xs.contiguous(memory_format=torch.channels_last)).float()
        pred = krr_predict(feat_syn, feat_real, ys, ridge=config.ridge)
        return mse(pred, target)

    def after(_: int) -> None:
        with torch.no_grad():
            xs, ys = synth.support()
        pool.update(current["model"], xs, ys)

    max_s = config.max_minutes * 60 if config.max_minutes else None
    result = fit(step, opt, config.num_steps, scheduler=sched, after_step=after, grad_clip=config.grad_clip,
                 reporter=reporter, name=f"distill {config.method}", log_every=10, max_seconds=max_s) \
        if config.num_steps > 0 else None
    with torch.no_grad():
        xs1, ys1 = synth.support()
        # How far the outer loop moved the support set from its initialisation (relative Frobenius norm):
        # a diagnostic for "did distillation change anything", reported by `ssdd distill --json`.
        drift = {"images": float((xs1 - xs0).norm() / xs0.norm().clamp_min(1e-12)),
                 "targets": float((ys1 - ys0).norm() / ys0.norm().clamp_min(1e-12))}
    synth = synth.cpu()
    if config.method == "boost" and config.approx and len(synth.views) > 1 and not joint:
        synth, approx_fit = fit_approx_networks(synth, config.approx_hidden, config.approx_steps, config.approx_lr,
                                                config.seed)
    tensors = synth.stored_tensors()
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    final = storage_report(shapes, image_shape=(dataset.num_channels, dataset.image_size, dataset.image_size),
                           method=config.method, num_images=synth.num_images)
    if not final.fits(config.budget):  # a bug, not a user error: the plan said it fits
        raise RuntimeError(f"distilled set costs {final.cost:.2f} > budget {config.budget}")
    seconds = time.perf_counter() - t0
    meta = {
        "method": config.method,
        "source": dataset.name,
        "image_size": str(dataset.image_size),
        "channels": str(dataset.num_channels),
        "basis_size": str(synth.basis_size),
        "mean": list(mean),
        "std": list(std),
        "image_space": "raw" if config.raw_space else "normalized",
        "views": list(synth.views),
        "teacher": teacher.describe(),
        "budget": str(config.budget),
        "storage": final.to_dict(),
        "config": to_dict(config),
        "counts": {"m": size.num_images, "U": size.image_rank, "V": size.repr_rank,
                   "k": size.approx_hidden if config.approx else 0, "views": len(synth.views)},
        "seed": str(config.seed),
        "fit": {"approx": approx_fit, "init": init_stats, "drift": {k: round(v, 5) for k, v in drift.items()},
                "steps_done": result.steps if result else 0,
                "final_loss": result.final_loss if result else None,
                "first_loss": result.losses[0] if result and result.losses else None,
                "seconds": round(seconds, 1), "device": str(device), "torch_version": torch.__version__},
        "history": [round(v, 6) for v in (result.losses if result else [])][::max(1, len(result.losses) // 200) if result else 1],
    }
    return DistillResult(synth, tensors, meta, result.losses if result else [], seconds)
