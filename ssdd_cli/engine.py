"""The one training loop of ssdd, with its optimizer and schedule factories.

Every trainer (Barlow Twins teacher, KRR-ST and Boost distillation, pool warm-up, pretraining on a
distilled set, linear probe, approximation networks) calls :func:`fit` with a ``step`` function
that returns the loss of one step; nothing here is specific to any method.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from .checkpoint import stop_on_signals
from .errors import ConfigError, Interrupted, NumericalError
from .reporting import NullReporter, ProgressReporter

Params = Iterable[torch.nn.Parameter] | Iterable[dict[str, object]]


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017), solo-learn style.

    Parameters with one dimension (biases, BatchNorm) skip both the adaptive scaling and weight
    decay. With ``clip_lr`` the trust ratio is capped at 1 (the local lr never exceeds the global).
    """

    def __init__(
        self,
        params: Params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        clip_lr: bool = True,
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, clip_lr=clip_lr, eps=eps)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        """Perform one update."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    if group["weight_decay"]:
                        grad = grad.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where(
                        (p_norm > 0) & (g_norm > 0),
                        group["eta"] * p_norm / (g_norm + group["eps"]),
                        torch.ones_like(p_norm),
                    )
                    if group["clip_lr"]:
                        # the adaptive lr (trust · lr) never exceeds the global lr
                        trust = (trust / group["lr"]).clamp(max=1.0) if group["lr"] > 0 else trust
                    grad = grad * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])


def make_optimizer(
    name: str,
    params: Params,
    lr: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> Optimizer:
    """Build ``sgd``, ``adam``, ``adamw`` or ``lars`` (the single optimizer factory)."""
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; use sgd, adam, adamw or lars")


def make_schedule(
    optimizer: Optimizer,
    kind: str,
    num_steps: int,
    *,
    warmup_steps: int = 0,
    final_factor: float = 0.0,
) -> LRScheduler:
    """Per-step learning-rate multiplier: ``constant``, ``linear`` or ``cosine`` (after a linear warm-up).

    ``linear`` goes from 1 to ``final_factor`` over ``num_steps`` (KRR-ST's LinearLR 1 → 1e-3);
    ``cosine`` anneals from 1 to ``final_factor``.
    """
    kind = kind.lower()
    if kind not in ("constant", "linear", "cosine"):
        raise ConfigError(f"unknown schedule {kind!r}; use constant, linear or cosine")

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return max(step, 1e-4) / warmup_steps
        if kind == "constant":
            return 1.0
        span = max(num_steps - warmup_steps, 1)
        t = min(max(step - warmup_steps, 0) / span, 1.0)
        if kind == "linear":
            return 1.0 + (final_factor - 1.0) * t
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return LambdaLR(optimizer, factor)


@dataclass
class FitResult:
    """What :func:`fit` returns: the loss history (every ``log_every`` steps) and the wall time."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        """The last recorded loss (NaN when nothing was recorded)."""
        return self.losses[-1] if self.losses else float("nan")


#: a time estimate is printed once the first steps are measured, when the rest would take longer than this
ETA_NOTE_S = 180.0
ETA_AFTER_S, ETA_AFTER_STEPS = 10.0, 20


def _duration(seconds: float) -> str:
    """``"2 h 05 min"``, ``"14 min"`` or ``"50 s"``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{round(seconds / 60)} min" if seconds >= 90 else f"{round(seconds)} s"


StepFn = Callable[[int], torch.Tensor | tuple[torch.Tensor, dict[str, float]]]


def fit(
    step: StepFn,
    optimizer: Optimizer,
    num_steps: int,
    *,
    scheduler: LRScheduler | None = None,
    after_step: Callable[[int], None] | None = None,
    grad_clip: float = 0.0,
    params_to_clip: Iterable[torch.Tensor] | None = None,
    reporter: ProgressReporter | None = None,
    name: str = "train",
    log_every: int = 10,
    max_seconds: float | None = None,
    hint: str = "lower the learning rate",
    start: FitResult | None = None,
    checkpoint: Callable[[FitResult], None] | None = None,
    checkpoint_every: int = 0,
    after_backward: Callable[[], None] | None = None,
    agree: Callable[[Sequence[bool]], list[bool]] | None = None,
) -> FitResult:
    """Run ``num_steps`` optimisation steps.

    Each step: zero the gradients, ``loss = step(i)`` (optionally with extra metrics), backward,
    ``after_backward()``, optional gradient-norm clipping, optimizer and scheduler step, then
    ``after_step(i)``.

    Args:
        step: computes the loss of step ``i`` (a scalar tensor with grad), or ``(loss, metrics)``.
        optimizer: the optimizer over the trained tensors.
        num_steps: number of steps to run.
        scheduler: stepped once per step.
        after_step: called after the update (e.g. the model pool's online update).
        grad_clip: clip the global gradient norm to this value (0 = off).
        params_to_clip: tensors to clip (default: every parameter of the optimizer).
        reporter: progress sink (default: silent).
        name: progress-bar label.
        log_every: how often the loss is read back (a device sync), checked and recorded; 0 = never
            (no host-device synchronisation at all, for inner steps whose divergence shows elsewhere).
        max_seconds: stop early after this wall time (the run keeps what it learnt).
        hint: what to try when the run diverges (ends the error message).
        start: the progress of an interrupted run to continue (steps done, losses so far); the
            caller has restored every other state.
        checkpoint: saves the caller's state; called every ``checkpoint_every`` steps and, after
            the step in progress, when SIGINT or SIGTERM arrives (the run then stops with
            :class:`~ssdd_cli.errors.Interrupted`).
        checkpoint_every: steps between checkpoints (0: only on a signal).
        after_backward: called once the gradients are in, before clipping and the update (a run split
            over processes sums its gradients here).
        agree: turns this process's decisions ``[stop for a signal, stop for the time limit]`` into
            the ones every process of a distributed run takes (:func:`ssdd_cli.distributed.any_flags`),
            so that all of them stop after the same step; called every step.

    Raises:
        NumericalError: the loss or a trained tensor became NaN or infinite (checked when the loss is read).
        Interrupted: a signal arrived while checkpointing was on; the checkpoint is saved.
    """
    reporter = reporter or NullReporter()
    trained = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    clip_params = list(params_to_clip) if params_to_clip is not None else trained
    result = FitResult(list(start.losses), start.steps) if start is not None else FitResult()
    reported = first = result.steps
    t0 = time.perf_counter()
    estimated = False
    cleanup = contextlib.ExitStack()
    stop = cleanup.enter_context(stop_on_signals()) if checkpoint is not None else None
    reporter.start(name, num_steps)
    if reported:
        reporter.advance(reported)
    try:
        for i in range(result.steps, num_steps):
            optimizer.zero_grad(set_to_none=True)
            out = step(i)
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            # Only the optimised tensors get gradients: in distillation this skips the pool model's
            # weight gradients, which the outer update never uses.
            loss.backward(inputs=trained)
            if after_backward is not None:
                after_backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if after_step is not None:
                after_step(i)
            result.steps += 1
            if not estimated and (time.perf_counter() - t0 > ETA_AFTER_S or i + 1 - first == ETA_AFTER_STEPS):
                estimated = True
                per_step = (time.perf_counter() - t0) / (i + 1 - first)
                left = per_step * (num_steps - i - 1)
                if left > ETA_NOTE_S and not (max_seconds is not None and max_seconds < left):
                    reporter.note(f"{name}: about {_duration(left)} left for {num_steps - i - 1:,} steps "
                                  f"({per_step:.3g} s per step, measured over the first {i + 1 - first})")
            if log_every and (i == 0 or (i + 1) % log_every == 0 or i == num_steps - 1):
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise NumericalError(f"{name}: the loss became {value} at step {i + 1}; {hint}")
                if not all(bool(torch.isfinite(p).all()) for p in trained):
                    raise NumericalError(f"{name}: a trained tensor became NaN or infinite by step {i + 1}; {hint}")
                result.losses.append(value)
                reporter.advance(i + 1 - reported, loss=value, **metrics)
                reported = i + 1
            interrupted = bool(stop)
            time_up = max_seconds is not None and time.perf_counter() - t0 > max_seconds
            if agree is not None:
                interrupted, time_up = agree([interrupted, time_up])
            if checkpoint is not None and ((checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < num_steps)
                                           or interrupted):
                checkpoint(result)
                if interrupted:
                    raise Interrupted(f"{name}: interrupted after step {i + 1} of {num_steps}; the state is saved, "
                                      "so the same command with --resume continues from there")
            if time_up:
                break
    finally:
        reporter.stop()
        cleanup.close()
    result.seconds = time.perf_counter() - t0
    return result
