"""Memory-bounded PCA for basis initialisation (method.md §6.2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def pca(
    chunks: Callable[[], Iterator[torch.Tensor]],
    rank: int,
    *,
    dim: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Principal components of data streamed in chunks of shape ``(n_i, dim)``.

    Accumulates the mean and the ``dim × dim`` scatter matrix in float64 (two passes, memory
    ``O(dim²)`` whatever the number of samples), then takes the top eigenvectors.

    Args:
        chunks: a callable returning a fresh iterator over the data chunks (called twice).
        rank: number of components (≤ ``dim``).
        dim: feature dimension.
        device: where to accumulate (default: the chunks' device).

    Returns:
        ``(mean (dim,), components (rank, dim) with orthonormal rows, explained variance (rank,))``,
        float32, components sorted by decreasing variance.
    """
    if not 1 <= rank <= dim:
        raise ValueError(f"rank {rank} must be in [1, {dim}]")
    total = None
    count = 0
    for c in chunks():
        c = c.reshape(c.shape[0], -1).to(device or c.device, torch.float64)
        total = c.sum(0) if total is None else total + c.sum(0)
        count += c.shape[0]
    if total is None or count < 2:
        raise ValueError("PCA needs at least two samples")
    mean = total / count
    scatter = torch.zeros(dim, dim, dtype=torch.float64, device=mean.device)
    for c in chunks():
        c = c.reshape(c.shape[0], -1).to(mean.device, torch.float64) - mean
        scatter += c.T @ c
    evals, evecs = torch.linalg.eigh(scatter / (count - 1))  # ascending
    top = torch.argsort(evals, descending=True)[:rank]
    comps = evecs[:, top].T  # (rank, dim)
    # Fix the sign of each component (largest-magnitude entry positive) for reproducibility.
    idx = comps.abs().argmax(1)
    signs = torch.sign(comps[torch.arange(rank), idx])
    comps = comps * signs[:, None]
    return mean.float(), comps.float(), evals[top].clamp(min=0).float()
