"""Device and precision policy: the only place that picks devices."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import torch

from .errors import ConfigError, DeviceError


def resolve_device(spec: str | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a ``torch.device``.

    ``auto`` picks CUDA when it is available and the CPU otherwise. An explicit CUDA request on a
    machine without CUDA raises :class:`DeviceError` rather than silently falling back. Under
    torchrun with several processes, ``auto`` and ``cuda`` mean this process's own GPU,
    ``cuda:LOCAL_RANK``.
    """
    from .distributed import launched, local_rank

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and launched() and torch.cuda.is_available():
        if local_rank() >= torch.cuda.device_count():
            raise DeviceError(f"torchrun started process {local_rank()} on this machine but only "
                              f"{torch.cuda.device_count()} CUDA device(s) exist; lower --nproc_per_node")
        return torch.device("cuda", local_rank())
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif dev.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return dev


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds ``device`` up rather than slowing it down.

    CUDA: devices with native bf16 (Ampere and later). CPU: only with AMX tiles or AVX512-BF16; on
    other CPUs (e.g. AVX2-only) bf16 convolutions are emulated and run many times slower than fp32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def use_amp(device: torch.device, enabled: bool | None) -> bool:
    """Resolve an ``amp`` setting: ``True``/``False`` as given, ``None`` ("auto") to :func:`bf16_is_fast`."""
    return bf16_is_fast(device) if enabled is None else bool(enabled)


def autocast(device: torch.device, enabled: bool | None) -> contextlib.AbstractContextManager[object]:
    """Mixed-precision context: bf16 autocast when ``enabled`` (``None``: only where bf16 is fast)."""
    if not use_amp(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def sync(device: torch.device) -> None:
    """Wait for queued work on ``device`` (for honest timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``module`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def busy_cores(seconds: float = 0.25) -> float:
    """How many cores other work keeps busy right now (from ``/proc/stat`` over ``seconds``; 0 where unknown)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    span = total1 - total0
    return 0.0 if span <= 0 else (1 - (idle1 - idle0) / span) * (os.cpu_count() or 1)


def set_threads(spec: str | int | None = "auto") -> int:
    """Set torch's intra-op threads and return the count.

    ``auto`` leaves an explicit ``OMP_NUM_THREADS`` alone; otherwise it uses the cores this process may
    run on that are not already busy (measured over a quarter of a second before the work starts), at
    least one.
    Measured on a 2-core machine with one competing busy process, a cpu-preset step took 0.53 s on two
    threads and 0.33 s on one (0.18 s on two when alone): oversubscribed threads wait for each other.

    Raises:
        ConfigError: a count below 1 or a word other than ``auto``.
    """
    text = str(spec if spec is not None else "auto").strip().lower()
    if text == "auto":
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        count = max(1, cores - round(busy_cores()))
    else:
        try:
            count = int(text)
        except ValueError:
            raise ConfigError(f"--threads takes a count or auto, got {spec!r}") from None
        if count < 1:
            raise ConfigError(f"--threads must be ≥ 1, got {count}")
    torch.set_num_threads(count)
    return count
