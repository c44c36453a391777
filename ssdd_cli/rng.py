"""Explicit randomness: named, independent generator streams derived from one root seed."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


def derive_seed(root: int, stream: str) -> int:
    """Derive a 63-bit seed for the named stream, so adding a stream never shifts the others.

    Args:
        root: the user's root seed.
        stream: a stable stream name such as ``"model-pool"`` or ``"augment"``.

    Returns:
        A non-negative integer seed.
    """
    digest = hashlib.sha256(f"{root}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


def stream(root: int, name: str, device: torch.device | str = "cpu") -> torch.Generator:
    """Shorthand for ``make_generator(derive_seed(root, name), device)``."""
    return make_generator(derive_seed(root, name), device)


@contextlib.contextmanager
def seeded(root: int, name: str | None = None) -> Iterator[None]:
    """Run a block with torch's global CPU RNG seeded from the named stream, restoring it afterwards.

    For code that draws from the global RNG by design (``nn.Module`` initialisers): the block is
    reproducible and the caller's RNG state is untouched. Without ``name``, ``root`` is the seed itself.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(root if name is None else derive_seed(root, name))
        yield
