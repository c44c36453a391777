"""Loss functions (pure, no state)."""

from __future__ import annotations

import torch


def barlow_twins_loss(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 0.0051, scale: float = 1.0) -> torch.Tensor:
    """Barlow Twins objective (method.md §4.1).

    Each view's projections are standardised per dimension over the batch (BatchNorm without
    affine, biased variance), ``C = ẑ_aᵀ ẑ_b / B``, and
    ``L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²``, multiplied by ``scale``.

    Args:
        z_a: ``(B, d)`` projections of view A.
        z_b: ``(B, d)`` projections of view B.
        lambd: off-diagonal weight λ.
        scale: overall loss scale (solo-learn's ``scale_loss``).
    """
    z_a, z_b = z_a.float(), z_b.float()
    n = z_a.shape[0]
    za = (z_a - z_a.mean(0)) / torch.sqrt(z_a.var(0, unbiased=False) + 1e-5)
    zb = (z_b - z_b.mean(0)) / torch.sqrt(z_b.var(0, unbiased=False) + 1e-5)
    corr = za.T @ zb / n  # (d, d)
    diag = torch.diagonal(corr)
    on = (1 - diag).pow(2).sum()
    off = corr.pow(2).sum() - diag.pow(2).sum()
    return scale * (on + lambd * off)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every entry (KRR-ST's inner/outer loss)."""
    return (pred.float() - target.float()).pow(2).mean()
