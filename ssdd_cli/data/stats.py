"""Per-channel normalization statistics of uint8 image tensors."""

from __future__ import annotations

import torch


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Compute the exact per-channel mean and (population) std of uint8 images, in [0, 1].

    The moments come from a 256-bin histogram per channel, accumulated in float64, so the
    result is exact and needs no float copy of the whole tensor.

    Args:
        images: ``(N, C, H, W)`` uint8 tensor.

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats in [0, 1].

    Raises:
        ValueError: if ``images`` is not a non-empty 4-d uint8 tensor (a programming error).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"expected non-empty (N, C, H, W) uint8 images, got {images.dtype} "
                         f"{tuple(images.shape)}")
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means: list[float] = []
    stds: list[float] = []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        var = (counts * (levels - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)
