"""Barlow Twins loss against a plain float64 reference, and its invariances."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli.losses import barlow_twins_loss, mse


def reference_bt(za: torch.Tensor, zb: torch.Tensor, lambd: float, eps: float = 1e-5) -> float:
    """Plain loops in float64: standardise per dim (biased var + eps), C = zaᵀzb/B, on- and off-diagonal terms."""
    za, zb = za.double(), zb.double()
    n, d = za.shape

    def standardise(z: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(z)
        for j in range(d):
            col = z[:, j]
            mu = sum(float(v) for v in col) / n
            var = sum((float(v) - mu) ** 2 for v in col) / n  # biased
            out[:, j] = (col - mu) / (var + eps) ** 0.5
        return out

    a, b = standardise(za), standardise(zb)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = float((a[:, i] * b[:, j]).sum()) / n
            loss += (1 - c) ** 2 if i == j else lambd * c ** 2
    return loss


def _pair(n: int = 12, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(n, d, generator=g)
    zb = 0.7 * za + 0.5 * torch.randn(n, d, generator=g)  # correlated, so both terms are non-trivial
    return za, zb


@pytest.mark.parametrize("lambd", [0.0051, 0.5])
def test_matches_reference(lambd: float) -> None:
    """The loss equals the float64 reference (float32 computation: rtol 1e-5)."""
    za, zb = _pair()
    got = float(barlow_twins_loss(za, zb, lambd))
    assert got == pytest.approx(reference_bt(za, zb, lambd), rel=1e-5)


def test_scale_multiplies() -> None:
    """``scale`` multiplies the whole loss."""
    za, zb = _pair(seed=1)
    assert float(barlow_twins_loss(za, zb, 0.01, scale=0.1)) == pytest.approx(
        0.1 * reference_bt(za, zb, 0.01), rel=1e-5)


def test_identical_views_have_no_on_diagonal_loss() -> None:
    """For z_a = z_b the diagonal of C is 1 (up to eps), so with λ = 0 the loss is ~0; with λ > 0 it is not."""
    za, _ = _pair(n=64)
    assert float(barlow_twins_loss(za, za.clone(), 0.0)) < 1e-6
    assert float(barlow_twins_loss(za, za.clone(), 1.0)) > 1e-3


def test_invariant_to_per_dimension_affine_maps() -> None:
    """Positive per-dimension scaling and shifts of either view leave the loss unchanged."""
    za, zb = _pair(seed=2)
    g = torch.Generator().manual_seed(9)
    scale_a, shift_a = torch.rand(5, generator=g) * 3 + 0.5, torch.randn(5, generator=g) * 4
    scale_b, shift_b = torch.rand(5, generator=g) * 3 + 0.5, torch.randn(5, generator=g) * 4
    base = float(barlow_twins_loss(za, zb, 0.0051))
    moved = float(barlow_twins_loss(za * scale_a + shift_a, zb * scale_b + shift_b, 0.0051))
    assert moved == pytest.approx(base, rel=1e-4)
    # a negative scale flips correlations and does change the loss (so the check above can fail)
    flipped = float(barlow_twins_loss(za * -1.0, zb, 0.0051))
    assert abs(flipped - base) > 1.0


def test_gradients_are_finite() -> None:
    """The loss is differentiable in both inputs."""
    za, zb = _pair()
    za.requires_grad_(True)
    zb.requires_grad_(True)
    barlow_twins_loss(za, zb).backward()
    assert torch.isfinite(za.grad).all() and za.grad.abs().sum() > 0
    assert torch.isfinite(zb.grad).all() and zb.grad.abs().sum() > 0


def test_mse() -> None:
    """Mse is the mean over every entry."""
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert float(mse(a, b)) == pytest.approx((4 + 9) / 4)
