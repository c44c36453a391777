"""Checkpoints of long runs (``teacher`` and ``distill``), so an interrupted run continues where it stopped.

A checkpoint is a safetensors file beside the output (``<output>.ckpt``, written through the package's
atomic, checksummed writer; nothing is pickled) holding every piece of state a run needs to continue
bit-identically on the same device: learnable tensors, optimizer and scheduler states, the model pool
with its counters, generator states, the order of the remaining real batches, the step and the loss
history. It records the identity of the run (settings, data fingerprint, teacher hash); ``--resume``
refuses a checkpoint of another run. It is removed once the output is written.

Checkpoints are saved every ``checkpoint_every`` steps and when SIGINT or SIGTERM arrives (after the
step in progress), in which case the run stops with :class:`~ssdd_cli.errors.Interrupted`.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .bundle import load_tensors, save_tensors
from .errors import BundleError, ConfigError

META_KEY = "ssdd.checkpoint"


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of a run writing ``output`` lives."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


@dataclass
class State:
    """A flat checkpoint: named tensors and JSON-ready values."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def put_module(self, prefix: str, module: torch.nn.Module) -> None:
        """Every parameter and buffer of ``module``."""
        for k, v in module.state_dict().items():
            self.tensors[f"{prefix}.{k}"] = v.detach()

    def get_module(self, prefix: str, module: torch.nn.Module) -> None:
        """Load what :meth:`put_module` stored into ``module`` (same architecture)."""
        start = prefix + "."
        module.load_state_dict({k[len(start):]: v for k, v in self.tensors.items() if k.startswith(start)})

    def put_optimizer(self, prefix: str, opt: torch.optim.Optimizer) -> None:
        """Per-parameter state tensors and the JSON part of the optimizer (param groups)."""
        sd = opt.state_dict()
        for idx, st in sd["state"].items():
            for name, value in st.items():
                self.tensors[f"{prefix}.state.{idx}.{name}"] = torch.as_tensor(value)
        self.values[prefix] = {"param_groups": sd["param_groups"]}

    def get_optimizer(self, prefix: str, opt: torch.optim.Optimizer) -> None:
        """Restore what :meth:`put_optimizer` stored (tensors moved to the parameters' device)."""
        device = opt.param_groups[0]["params"][0].device
        state: dict[int, dict[str, Any]] = {}
        start = prefix + ".state."
        for key, value in self.tensors.items():
            if key.startswith(start):
                idx, name = key[len(start):].split(".", 1)
                state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
        opt.load_state_dict({"state": state, "param_groups": self.values[prefix]["param_groups"]})

    def put_generator(self, name: str, gen: torch.Generator) -> None:
        """A generator's state."""
        self.tensors[f"gen.{name}"] = gen.get_state()

    def get_generator(self, name: str, gen: torch.Generator) -> None:
        """Restore a generator's state."""
        gen.set_state(self.tensors[f"gen.{name}"])

    def put_scheduler(self, name: str, sched: Any) -> None:
        """A learning-rate scheduler's (JSON-able) state."""
        self.values[f"sched.{name}"] = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}

    def get_scheduler(self, name: str, sched: Any) -> None:
        """Restore a scheduler's state (its lambdas are rebuilt by the caller)."""
        sched.load_state_dict({**self.values[f"sched.{name}"], "lr_lambdas": [None] * len(sched.lr_lambdas)})


def save_checkpoint(path: Path, state: State, identity: Mapping[str, Any]) -> None:
    """Write ``state`` atomically with the run's ``identity``."""
    meta = {META_KEY: json.dumps({"identity": identity, "values": state.values}, sort_keys=True)}
    save_tensors(path, {k: v.detach().cpu().contiguous() for k, v in state.tensors.items()}, meta)


def load_checkpoint(path: Path, identity: Mapping[str, Any]) -> State:
    """Read a checkpoint of this run.

    Raises:
        ConfigError: no checkpoint, or one made by a run with other settings, data or teacher.
        BundleError: an unreadable or corrupt checkpoint.
    """
    if not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}; run without --resume to start afresh")
    tensors, meta = load_tensors(path)
    try:
        record = json.loads(meta[META_KEY])
    except (KeyError, ValueError):
        raise BundleError(f"{path}: not an ssdd checkpoint; remove it or run without --resume") from None
    theirs = record["identity"]
    ours = json.loads(json.dumps(identity, sort_keys=True))
    if theirs != ours:
        keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        detail = ", ".join(f"{k}: {theirs.get(k)!r} → {ours.get(k)!r}" for k in keys[:3])
        raise ConfigError(f"--resume: {path} belongs to a run with other settings ({detail}); repeat the original "
                          "command, or remove the checkpoint to start afresh")
    return State(tensors, record["values"])


@dataclass
class Checkpointing:
    """Where and how often a run checkpoints, and what it resumes from."""

    path: Path
    every: int = 500  # steps between checkpoints (0: only on SIGINT/SIGTERM)
    identity: dict[str, Any] = field(default_factory=dict)
    resume: bool = False

    def load(self) -> State | None:
        """The checkpoint to resume from (``None`` when not resuming)."""
        return load_checkpoint(self.path, self.identity) if self.resume else None

    def save(self, state: State) -> None:
        """Write a checkpoint."""
        save_checkpoint(self.path, state, self.identity)

    def remove(self) -> None:
        """Drop the checkpoint once the run's output is safely written."""
        self.path.unlink(missing_ok=True)


class StopRequest:
    """Set by SIGINT/SIGTERM while a checkpointed loop runs; the loop stops after the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a :class:`StopRequest` for the block (main thread only; elsewhere a no-op)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, _frame: Any) -> None:
        request.signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


StateFn = Callable[[], State]
