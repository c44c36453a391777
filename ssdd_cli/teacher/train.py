"""Barlow Twins teacher training (method.md §4.3) through the one training loop."""

from __future__ import annotations

import time
from dataclasses import asdict

import torch
from torch import nn

from .. import augment
from ..checkpoint import Checkpointing, State
from ..config import TeacherConfig
from ..data.batches import ShuffledBatches
from ..device import autocast
from ..engine import FitResult, fit, make_optimizer, make_schedule
from ..errors import ConfigError
from ..losses import barlow_twins_loss
from ..models import create_model
from ..reporting import ProgressReporter
from ..rng import derive_seed, seeded, stream
from .model import Teacher


class Projector(nn.Sequential):
    """Barlow Twins projector: Linear-BN-ReLU ×2 then Linear (solo-learn layout)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False),
        )


def train_teacher(
    train_images: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    config: TeacherConfig,
    device: torch.device,
    dataset_name: str = "",
    reporter: ProgressReporter | None = None,
    checkpointing: Checkpointing | None = None,
) -> tuple[Teacher, list[float]]:
    """Train a Barlow Twins encoder on uint8 images ``(n, C, H, W)``.

    Two views per image (method.md §4.3: resized crop, colour jitter, grayscale, flip; solarize
    on view B), projector ``D → d → d → d``, loss of :func:`~ssdd_cli.losses.barlow_twins_loss`.

    Returns:
        The frozen teacher and the loss history.

    Raises:
        Interrupted: SIGINT/SIGTERM arrived while checkpointing; the checkpoint is saved.
    """
    image_size = int(train_images.shape[-1])
    if train_images.shape[0] < config.batch_size:
        raise ConfigError(
            f"the dataset has {train_images.shape[0]} training images, fewer than --batch-size {config.batch_size}"
        )
    encoder = create_model(config.arch, image_size=image_size, out_dim=None, seed=derive_seed(config.seed, "teacher-init"))
    with seeded(config.seed, "projector-init"):
        projector = Projector(encoder.repr_dim, config.projector_dim)
    encoder.to(device).train()
    projector.to(device).train()
    if device.type == "cpu" or config.amp:
        encoder.to(memory_format=torch.channels_last)
    data = train_images.to(device)
    gen = stream(config.seed, "teacher-augment", device)
    batches = ShuffledBatches(data.shape[0], config.batch_size, stream(config.seed, "teacher-order", "cpu"),
                              drop_last=True, device=device)
    params = list(encoder.parameters()) + list(projector.parameters())
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    lr = config.lr * config.batch_size / 256 if config.optimizer == "lars" else config.lr
    opt = make_optimizer(config.optimizer, [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ], lr, weight_decay=config.weight_decay)
    sched = make_schedule(opt, "cosine", config.num_steps, warmup_steps=min(config.warmup_steps, config.num_steps // 2))

    def step(_: int) -> torch.Tensor:
        x = augment.to_float(data[batches.next()])
        va = augment.normalize(augment.barlow_twins_view(x, gen, 0.0), mean, std)
        vb = augment.normalize(augment.barlow_twins_view(x, gen, 0.2), mean, std)
        both = torch.cat([va, vb]).contiguous(memory_format=torch.channels_last)
        with autocast(device, config.amp):
            # The two views go through the encoder separately so BatchNorm sees each view's own batch.
            za = projector(encoder.represent(both[: x.shape[0]]))
            zb = projector(encoder.represent(both[x.shape[0]:]))
        return barlow_twins_loss(za, zb, config.lambd, config.scale_loss)

    start = None
    resume = checkpointing.load() if checkpointing is not None else None
    if resume is not None:
        resume.get_module("encoder", encoder)
        resume.get_module("projector", projector)
        resume.get_optimizer("opt", opt)
        resume.get_scheduler("teacher", sched)
        resume.get_generator("teacher-augment", gen)
        resume.get_generator("teacher-order", batches.generator)
        batches.restore(resume.tensors["order.remaining"], resume.values["order"]["sizes"])
        start = FitResult(list(resume.values["fit"]["losses"]), int(resume.values["fit"]["steps"]))
        if reporter is not None:
            reporter.note(f"resuming from {checkpointing.path} at step {start.steps:,}")  # type: ignore[union-attr]

    def save(progress: FitResult) -> None:
        state = State()
        state.put_module("encoder", encoder)
        state.put_module("projector", projector)
        state.put_optimizer("opt", opt)
        state.put_scheduler("teacher", sched)
        state.put_generator("teacher-augment", gen)
        state.put_generator("teacher-order", batches.generator)
        remaining, sizes = batches.state()
        state.tensors["order.remaining"] = remaining
        state.values["order"] = {"sizes": sizes}
        state.values["fit"] = {"steps": progress.steps, "losses": progress.losses}
        checkpointing.save(state)  # type: ignore[union-attr]

    t0 = time.perf_counter()
    max_s = config.max_minutes * 60 if config.max_minutes else None
    result = fit(step, opt, config.num_steps, scheduler=sched, reporter=reporter, name="barlow twins",
                 max_seconds=max_s, log_every=10, hint="lower --lr (or try --preset cpu's AdamW recipe)",
                 start=start, checkpoint=save if checkpointing is not None else None,
                 checkpoint_every=checkpointing.every if checkpointing is not None else 0)
    encoder.eval().to(memory_format=torch.contiguous_format)
    meta = {"dataset": dataset_name, "config": asdict(config), "steps_done": result.steps,
            "train_seconds": round(time.perf_counter() - t0, 1), "final_loss": result.final_loss,
            "origin": "ssdd teacher"}
    teacher = Teacher(encoder, arch=config.arch, image_size=image_size, mean=mean, std=std, meta=meta)
    return teacher, result.losses
