"""The one distillation loop of every method (method.md §5.5, §6.5); method specifics come from its entry.

Per outer step: decode the support set (every view of every distilled image, with its target),
take a pool model, compute its features (eval mode) of the support set and of an augmented real
batch, predict the teacher's representations of the real batch by kernel ridge regression, and
descend the MSE with AdamW on every learnable tensor; then the pool model takes its online step.

Under torchrun each outer step's real batch is split over the processes. Every process draws the
same batch indices, augmentation parameters and pool model (the run's named streams), embeds only
its own rows of the real batch, and takes its share ``b_rank / b`` of the mean outer loss; the
gradients are summed over the processes before the update, so the update is the one-process update
on the same global batch. The support side (the distilled set, its features, the KRR solve) and the
model pool are replicated: they depend only on the distilled set, which every process updates
identically; checkpoints check that the copies agree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import augment, distributed
from ..bundle import BundleMeta, TeacherRef
from ..checkpoint import Checkpointing, State
from ..config import DistillConfig, to_dict
from ..data.base import ImageDataset
from ..data.batches import ShuffledBatches
from ..device import autocast, eval_mode
from ..engine import FitResult, fit, make_optimizer, make_schedule
from ..errors import ConfigError
from ..losses import mse
from ..models.fold import embed_folded
from ..reporting import NullReporter, ProgressReporter
from ..rng import stream
from ..storage import SizePlan, storage_report
from ..teacher import Teacher
from .base import InitContext
from .krr import krr_predict
from .pool import ModelPool
from .registry import get_method
from .synthetic import SyntheticSet

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """A finished distillation: the set, its bundle tensors and metadata, and diagnostics."""

    synthetic: SyntheticSet
    tensors: dict[str, torch.Tensor]
    meta: BundleMeta
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def plan_distillation(config: DistillConfig, dataset: ImageDataset, repr_dim: int) -> SizePlan:
    """What the run will store and what it costs (computed once, printed before any work).

    Raises:
        ConfigError: a set over budget, or more images than the dataset has.
    """
    plan = get_method(config.method).plan(config, channels=dataset.num_channels, image_size=dataset.image_size,
                                          repr_dim=repr_dim)
    if plan.size.num_images > dataset.train_images.shape[0]:
        raise ConfigError(f"the set needs {plan.size.num_images} real images to start from but {dataset.name} has "
                          f"only {dataset.train_images.shape[0]}; lower --budget or --num-images"
                          + (", or --set sizing=paper (m ≤ N)" if config.sizing == "images" else ""))
    return plan


def check_teacher(teacher: Teacher, dataset: ImageDataset) -> None:
    """Refuse a teacher trained at another resolution than the data (before any work).

    Raises:
        ConfigError: the sizes differ.
    """
    if teacher.image_size != dataset.image_size:
        raise ConfigError(
            f"the teacher was trained at {teacher.image_size} px but the dataset is {dataset.image_size} px; "
            "pass --image-size to match or train a teacher at this size"
        )


class RealBatches:
    """Device-resident real images, shuffled without replacement, augmented in batches (§5.3).

    With a teacher cache (``views``: crop+flip parameters ``(n, K+1, 3)`` and ``targets``: the teacher's
    representations ``(n, K+1, D)`` of those views, slot 0 the un-augmented image), each image of a batch
    takes one of its cached views at random and comes with its target: no teacher forward.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 seed: int, device: torch.device, cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.images = images.to(device)
        self.mean, self.std = mean, std
        self.order = ShuffledBatches(images.shape[0], batch_size, stream(seed, "real-order", "cpu"), drop_last=True,
                                     device=device)
        self.aug_gen = stream(seed, "real-augment", device)
        self.cached = cached
        self.slot_gen = stream(seed, "real-cached-view", "cpu")

    def next_with_targets(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch and, with a teacher cache, the teacher's targets for it (else ``None``).

        Under torchrun: this process's rows of the batch (:func:`ssdd_cli.distributed.part`), augmented
        with the draws of the whole batch, so the processes' parts together are the one-process batch.
        """
        if self.cached is None:
            return self.next(), None
        views, targets = self.cached
        idx = self.order.next()
        start, stop = distributed.part(idx.shape[0])
        slots = torch.randint(0, views.shape[1], (idx.shape[0],), generator=self.slot_gen)[start:stop]
        idx = idx[start:stop]
        cpu_idx = idx.cpu()
        x = augment.crop_flip_at(augment.to_float(self.images[idx]), views[cpu_idx, slots].to(idx.device))
        return augment.normalize(x, self.mean, self.std), targets[cpu_idx, slots].to(idx.device).float()

    def next(self) -> torch.Tensor:
        """A normalised, crop+flip-augmented batch ``(b, C, H, W)`` (this process's rows of it under torchrun)."""
        idx = self.order.next()
        start, stop = distributed.part(idx.shape[0])
        params = augment.crop_flip_params(idx.shape[0], self.aug_gen, device=self.images.device)[start:stop]
        x = augment.crop_flip_at(augment.to_float(self.images[idx[start:stop]]), params)
        return augment.normalize(x, self.mean, self.std)

    def save_state(self, state: State) -> None:
        """Generators and the batches left in the current pass."""
        remaining, sizes = self.order.state()
        state.tensors["real.remaining"] = remaining
        state.values["real"] = {"sizes": sizes}
        state.put_generator("real-order", self.order.generator)
        state.put_generator("real-augment", self.aug_gen)
        state.put_generator("real-cached-view", self.slot_gen)

    def load_state(self, state: State) -> None:
        """Continue exactly where :meth:`save_state` was taken."""
        self.order.restore(state.tensors["real.remaining"], state.values["real"]["sizes"])
        state.get_generator("real-order", self.order.generator)
        state.get_generator("real-augment", self.aug_gen)
        state.get_generator("real-cached-view", self.slot_gen)


def distill(
    dataset: ImageDataset,
    teacher: Teacher,
    config: DistillConfig,
    *,
    device: torch.device,
    train_reprs: torch.Tensor | None = None,
    plan: SizePlan | None = None,
    reporter: ProgressReporter | None = None,
    checkpointing: Checkpointing | None = None,
    teacher_views: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DistillResult:
    """Distil ``dataset`` with ``config.method`` against ``teacher`` (already on ``device``).

    Most callers want :func:`ssdd_cli.api.distill`, which also supplies the cached teacher
    representations that Boost's PCA needs.

    Args:
        dataset: the source data (uint8 images; labels unused).
        teacher: frozen teacher with the source normalisation, on ``device``.
        config: method and hyper-parameters (validated when built).
        device: where to run.
        train_reprs: teacher representations of every training image (for entries that need them).
        plan: the storage plan from :func:`plan_distillation` (computed here when not given).
        reporter: progress sink.
        checkpointing: where to checkpoint the outer loop and whether to resume from it.
        teacher_views: the teacher cache (``config.teacher_cache`` > 0): view parameters and targets, from
            :func:`ssdd_cli.api.teacher_view_cache`.

    Raises:
        ConfigError: a configuration over budget or inconsistent with the data, or a checkpoint of another run.
        Interrupted: SIGINT/SIGTERM arrived; the checkpoint is saved.
    """
    reporter = reporter or NullReporter()
    method = get_method(config.method)
    t0 = time.perf_counter()
    check_teacher(teacher, dataset)
    resume = checkpointing.load() if checkpointing is not None else None
    plan = plan or plan_distillation(config, dataset, teacher.repr_dim)
    log.debug("planned storage: %s (cost %.2f ≤ budget %d)", plan.report.describe(), plan.report.cost, config.budget)
    ctx = InitContext(dataset, teacher, config, plan, device, train_reprs, reporter)
    synth, init_stats = method.initialise(ctx)
    synth, extra = method.before_loop(synth, config)
    init_stats.update(extra)
    synth.to(device)
    distributed.broadcast_tensors([*synth.parameters(), *synth.buffers()])  # one start for every process
    with torch.no_grad():
        xs0, ys0 = synth.support()

    steps = config.num_steps if method.trains else 0
    if steps > 0 and config.teacher_cache and teacher_views is None:
        raise ValueError("config.teacher_cache needs teacher_views (see ssdd_cli.api.teacher_view_cache)")
    result = (_outer_loop(synth, dataset, teacher, config, steps, xs0, ys0, device, reporter, checkpointing, resume,
                          teacher_views) if steps > 0 else None)
    with torch.no_grad():
        xs1, ys1 = synth.support()
        # How far the outer loop moved the support set from its initialisation (relative Frobenius norm):
        # a diagnostic for "did distillation change anything", reported by `ssdd distill --json`.
        drift = {"images": float((xs1 - xs0).norm() / xs0.norm().clamp_min(1e-12)),
                 "targets": float((ys1 - ys0).norm() / ys0.norm().clamp_min(1e-12))}
    synth, approx_fit = method.finalise(synth.cpu(), config)
    approx_fit = {**init_stats.pop("approx", {}), **approx_fit}  # networks fitted at initialisation, or now
    tensors = synth.stored_tensors()
    final = storage_report({k: tuple(v.shape) for k, v in tensors.items()}, image_shape=(dataset.num_channels, dataset.image_size, dataset.image_size),
                           label=method.name, num_images=synth.num_images, images_only=method.pixel_storage)
    if final.floats != plan.report.floats:  # a bug, not a user error: the plan is what was charged
        raise RuntimeError(f"stored tensors {final.describe()} differ from the plan {plan.report.describe()}")
    seconds = time.perf_counter() - t0
    losses = result.losses if result else []
    size = plan.size
    meta = BundleMeta(
        method=method.name, source=dataset.name, image_size=dataset.image_size, channels=dataset.num_channels,
        basis_size=synth.basis_size, mean=tuple(dataset.mean), std=tuple(dataset.std),
        image_space="raw" if config.raw_space else "normalized", views=tuple(synth.views),
        teacher=TeacherRef(**teacher.describe()), budget=config.budget, storage=final.to_dict(), config=to_dict(config),
        counts={"m": size.num_images, "U": size.image_rank, "V": size.repr_rank,
                "k": size.approx_hidden if config.approx else 0, "views": len(synth.views)},
        seed=config.seed,
        fit={"approx": approx_fit, "init": init_stats, "drift": {k: round(v, 5) for k, v in drift.items()},
             "steps_done": result.steps if result else 0, "final_loss": result.final_loss if result else None,
             "first_loss": losses[0] if losses else None, "seconds": round(seconds, 1), "device": str(device),
             "torch_version": torch.__version__,
             **({"processes": distributed.world_size()} if distributed.active() else {})},
        history=[round(v, 6) for v in losses][::max(1, len(losses) // 200)],
    )
    return DistillResult(synth, tensors, meta, losses, seconds)


def outer_loss(model: torch.nn.Module, xs: torch.Tensor, ys: torch.Tensor, xr: torch.Tensor, target: torch.Tensor, *,
               ridge: float, amp: bool | None = False) -> torch.Tensor:
    """The outer objective of one step (method.md §5.2-5.3), differentiable in ``xs`` and ``ys``.

    The pool ``model`` (eval mode for the step) embeds the support images ``xs (n, C, H, W)`` and the
    augmented real batch ``xr (b, C, H, W)``; kernel ridge regression on those features predicts the
    teacher's ``target (b, D)`` from the support targets ``ys (n, D)``; the loss is their MSE.
    """
    with eval_mode(model), autocast(xr.device, amp):
        with torch.no_grad():  # BatchNorm folded into the convs (eval mode: the same features, one pass fewer)
            feat_real = embed_folded(model, xr).float()
        feat_syn = model.embed(xs.contiguous(memory_format=torch.channels_last)).float()
    return mse(krr_predict(feat_syn, feat_real, ys, ridge=ridge), target)


def make_outer_step(synth: SyntheticSet, teacher: Teacher, config: DistillConfig, pool: ModelPool,
                    real: RealBatches) -> tuple[Callable[[int], torch.Tensor], Callable[[int], None]]:
    """The loss of one outer step and the pool's online step after the update (for :func:`~ssdd_cli.engine.fit`).

    Shared by the loop and ``benchmarks/speed.py``, so what is timed is what runs.
    """
    support_views = synth.views if config.aug_in_krr else ("identity",)
    current = {"model": 0}

    def step(_: int) -> torch.Tensor:
        xs, ys = synth.support(support_views)
        current["model"] = pool.sample()
        xr, target = real.next_with_targets()
        xr = xr.contiguous(memory_format=torch.channels_last)
        if target is None:
            with torch.no_grad():
                target = teacher.represent_normalized(xr, config.amp)
        loss = outer_loss(pool.models[current["model"]], xs, ys, xr, target, ridge=config.ridge, amp=config.amp)
        # under torchrun: this process's share of the global mean (its value: the global mean itself)
        return distributed.global_mean(loss, xr.shape[0], real.order.batch_size)

    def after(_: int) -> None:
        with torch.no_grad():
            xs, ys = synth.support()
        pool.update(current["model"], xs, ys)

    return step, after


def run_identity(kind: str, config: Any, dataset: ImageDataset, teacher: Teacher | None = None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the settings (less the time limit), the data and the teacher."""
    return {"kind": kind, "config": {k: v for k, v in to_dict(config).items() if k != "max_minutes"},
            "data": dataset.fingerprint(), "teacher": teacher.sha256 if teacher is not None else None}


def _outer_loop(synth: SyntheticSet, dataset: ImageDataset, teacher: Teacher, config: DistillConfig, num_steps: int,
                xs0: torch.Tensor, ys0: torch.Tensor, device: torch.device, reporter: ProgressReporter,
                checkpointing: Checkpointing | None, resume: State | None,
                teacher_views: tuple[torch.Tensor, torch.Tensor] | None = None):  # type: ignore[no-untyped-def]
    """The KRR outer loop over a model pool (shared by every method that trains)."""
    pool = ModelPool(
        arch=config.pool_arch, image_size=dataset.image_size, out_dim=teacher.repr_dim, size=config.pool_size,
        online_steps=config.pool_online_steps, lr=config.pool_lr, momentum=config.pool_momentum,
        weight_decay=config.pool_weight_decay, reset_bug=config.pool_reset_bug, seed=config.seed,
        device=device, amp=config.amp,
    )
    image_params = [p for n, p in synth.named_parameters() if p.requires_grad and n.startswith("image")]
    target_params = [p for n, p in synth.named_parameters() if p.requires_grad and not n.startswith("image")]
    groups = [{"params": image_params, "lr": config.lr},
              {"params": target_params, "lr": config.lr_targets or config.lr}]
    opt = make_optimizer("adamw", [g for g in groups if g["params"]], config.lr, weight_decay=0.0)
    sched = make_schedule(opt, "linear", max(num_steps, 1), final_factor=config.lr_final_factor)
    real = RealBatches(dataset.train_images, config.batch_size, dataset.mean, dataset.std, config.seed, device,
                       cached=teacher_views if config.teacher_cache else None)
    split = distributed.active()
    if real.order.batch_size < distributed.world_size():
        raise ConfigError(f"a real batch of {real.order.batch_size} images cannot be split over "
                          f"{distributed.world_size()} processes; raise --batch-size or start fewer processes")
    step, after = make_outer_step(synth, teacher, config, pool, real)
    if config.orthonormalise_every:
        after = _with_orthonormalisation(after, synth, opt, config.orthonormalise_every)
    start = None
    if resume is not None:
        resume.get_module("synth", synth)
        pool.load_state(resume)
        resume.get_optimizer("outer", opt)
        resume.get_scheduler("outer", sched)
        real.load_state(resume)
        start = FitResult(list(resume.values["fit"]["losses"]), int(resume.values["fit"]["steps"]))
        reporter.note(f"resuming from {checkpointing.path} at step {start.steps:,}")  # type: ignore[union-attr]
    else:
        pool.warm_up(xs0, ys0, reporter, max_age=num_steps)
        distributed.broadcast_tensors(pool.tensors())  # GPU kernels need not be bitwise reproducible

    def save(progress: FitResult) -> None:
        check_replicas(synth, pool)
        state = State()
        state.put_module("synth", synth)
        pool.save_state(state)
        state.put_optimizer("outer", opt)
        state.put_scheduler("outer", sched)
        real.save_state(state)
        state.values["fit"] = {"steps": progress.steps, "losses": progress.losses}
        if distributed.is_main():  # every process holds the same state
            checkpointing.save(state)  # type: ignore[union-attr]
        distributed.barrier()  # nobody stops before the checkpoint is on disk

    params = [p for g in opt.param_groups for p in g["params"]]
    max_s = config.max_minutes * 60 if config.max_minutes else None
    result = fit(step, opt, num_steps, scheduler=sched, after_step=after, grad_clip=config.grad_clip,
                 reporter=reporter, name=f"distill {config.method}", log_every=10, max_seconds=max_s,
                 hint="lower --lr, raise the ridge (--set ridge=1e-4), or check the teacher (its probe accuracy)",
                 start=start, checkpoint=save if checkpointing is not None else None,
                 checkpoint_every=checkpointing.every if checkpointing is not None else 0,
                 after_backward=(lambda: distributed.all_reduce_grads(params)) if split else None,
                 agree=distributed.any_flags if split else None)
    check_replicas(synth, pool)
    return result


def _with_orthonormalisation(after: Callable[[int], None], synth: SyntheticSet, opt: torch.optim.Optimizer,
                             every: int) -> Callable[[int], None]:
    """``after`` preceded, every ``every`` steps, by QR re-orthonormalisation of the bases (method.md §6.2).

    The pairs stay the same; the optimizer's moments of the tensors that changed are dropped (they
    described coordinates that no longer exist), so AdamW starts those tensors afresh.
    """
    def wrapped(i: int) -> None:
        if (i + 1) % every == 0:
            for p in synth.orthonormalise_():
                opt.state.pop(p, None)
        after(i)

    return wrapped


def check_replicas(synth: SyntheticSet, pool: ModelPool) -> None:
    """Under torchrun: check that every process holds rank 0's distilled set and pool (cheap digests).

    The distilled set only changes through summed gradients, so copies that differ are a bug. Pool
    models can drift apart by rounding on GPUs (kernels that are not bitwise reproducible); they are
    re-synchronised from rank 0, with a warning. Does nothing in a single process.

    Raises:
        RuntimeError: the processes' distilled sets differ.
    """
    if not distributed.active():
        return
    if distributed.replicas_differ([*synth.parameters(), *synth.buffers()]):
        raise RuntimeError(f"process {distributed.rank()}: the distilled sets of the processes differ; this is a bug")
    if distributed.replicas_differ(pool.tensors()):
        if distributed.is_main():
            log.warning("the pool models of the processes drifted apart (GPU rounding); re-synchronised from rank 0")
        distributed.broadcast_tensors(pool.tensors())
