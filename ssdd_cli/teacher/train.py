"""Barlow Twins teacher training (method.md §4.3) through the one training loop.

Under torchrun the model is wrapped in DDP and each step's global batch is split over the processes:
every process draws the same batch indices and augmentation parameters (the run's named streams),
augments and encodes only its own rows, and the projections of all rows are gathered (differentiably)
so that the cross-correlation and BatchNorm's statistics are those of the global batch, as in one
process. Every process computes the same loss; with DDP's gradient average that is the gradient of
the one-process loss (:func:`ssdd_cli.distributed.gather_rows`).
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch
from torch import nn

from .. import augment, distributed
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


class _Twin(nn.Module):
    """Encoder then projector: the network DDP wraps (one forward per view)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projector = encoder, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.projector(self.encoder.represent(x))  # type: ignore[operator]


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
    processes = distributed.world_size()
    if config.batch_size % processes:
        raise ConfigError(f"--batch-size {config.batch_size} is the global batch and must split evenly over the "
                          f"{processes} processes; pick a multiple of {processes}")
    encoder = create_model(config.arch, image_size=image_size, out_dim=None, seed=derive_seed(config.seed, "teacher-init"))
    with seeded(config.seed, "projector-init"):
        projector = Projector(encoder.repr_dim, config.projector_dim)
    encoder.to(device).train()
    projector.to(device).train()
    if device.type == "cpu" or config.amp:
        encoder.to(memory_format=torch.channels_last)
    split = distributed.active()
    twin = distributed.global_batchnorm(_Twin(encoder, projector), device)  # new BatchNorm modules: before the optimizer
    net: nn.Module = (torch.nn.parallel.DistributedDataParallel(twin, device_ids=[device.index] if device.type == "cuda" else None)
                      if split else twin)
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
        idx = batches.next()
        start, stop = distributed.part(idx.shape[0])  # this process's rows of the global batch
        rows = (start, idx.shape[0]) if split else None
        x = augment.to_float(data[idx[start:stop]])
        va = augment.normalize(augment.barlow_twins_view(x, gen, 0.0, rows=rows), mean, std)
        vb = augment.normalize(augment.barlow_twins_view(x, gen, 0.2, rows=rows), mean, std)
        both = torch.cat([va, vb]).contiguous(memory_format=torch.channels_last)
        with autocast(device, config.amp):
            # The two views go through the encoder separately so BatchNorm sees each view's own batch.
            za = distributed.gather_rows(net(both[: x.shape[0]]))
            zb = distributed.gather_rows(net(both[x.shape[0]:]))
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
        if distributed.is_main():  # every process holds the same state
            checkpointing.save(state)  # type: ignore[union-attr]
        distributed.barrier()  # nobody stops before the checkpoint is on disk

    t0 = time.perf_counter()
    max_s = config.max_minutes * 60 if config.max_minutes else None
    result = fit(step, opt, config.num_steps, scheduler=sched, reporter=reporter, name="barlow twins",
                 max_seconds=max_s, log_every=10, hint="lower --lr (or try --preset cpu's AdamW recipe)",
                 start=start, checkpoint=save if checkpointing is not None else None,
                 checkpoint_every=checkpointing.every if checkpointing is not None else 0,
                 agree=distributed.any_flags if split else None)
    if split:  # back to plain BatchNorm modules (same weights) for the frozen teacher
        plain = create_model(config.arch, image_size=image_size, out_dim=None, seed=derive_seed(config.seed, "teacher-init"))
        plain.load_state_dict(encoder.state_dict())
        encoder = plain.to(device)
    encoder.eval().to(memory_format=torch.contiguous_format)
    meta = {"dataset": dataset_name, "config": asdict(config), "steps_done": result.steps,
            "train_seconds": round(time.perf_counter() - t0, 1), "final_loss": result.final_loss,
            "origin": "ssdd teacher"}
    teacher = Teacher(encoder, arch=config.arch, image_size=image_size, mean=mean, std=std, meta=meta)
    return teacher, result.losses
