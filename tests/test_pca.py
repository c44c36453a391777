"""Streaming PCA (method.md §6.2) against a float64 SVD of the centred data."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli.methods.pca import pca

N, DIM, RANK = 60, 12, 3


def low_rank_data(seed: int = 0) -> torch.Tensor:
    """N points near a rank-3 subspace with well-separated variances, plus a mean offset and a little noise."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(DIM, RANK, generator=g, dtype=torch.float64))[0]
    z = torch.randn(N, RANK, generator=g, dtype=torch.float64) * torch.tensor([10.0, 4.0, 1.5], dtype=torch.float64)
    noise = 0.01 * torch.randn(N, DIM, generator=g, dtype=torch.float64)
    return (z @ q.T + noise + torch.linspace(-2, 3, DIM, dtype=torch.float64)).float()


def chunked(x: torch.Tensor, size: int):  # type: ignore[no-untyped-def]
    return lambda: iter(x.split(size))


def test_matches_svd() -> None:
    """Mean, components (up to sign) and variances match torch.linalg.svd of the centred data in float64."""
    x = low_rank_data()
    mean, comps, var = pca(chunked(x, N), RANK, dim=DIM)
    assert mean.shape == (DIM,) and comps.shape == (RANK, DIM) and var.shape == (RANK,)
    xd = x.double()
    torch.testing.assert_close(mean.double(), xd.mean(0), rtol=1e-6, atol=1e-6)
    _, s, vh = torch.linalg.svd(xd - xd.mean(0), full_matrices=False)
    cos = (comps.double() * vh[:RANK]).sum(1).abs()
    assert (cos > 1 - 1e-5).all(), cos
    torch.testing.assert_close(var.double(), s[:RANK] ** 2 / (N - 1), rtol=1e-4, atol=1e-6)
    assert (var[:-1] >= var[1:]).all()  # sorted by decreasing variance
    # the fourth direction is noise: it is orthogonal to the ones found
    assert (comps.double() @ vh[RANK]).abs().max() < 1e-3


def test_rows_orthonormal_and_sign_fixed() -> None:
    """Components have orthonormal rows; the largest-magnitude entry of each is positive."""
    x = low_rank_data(seed=1)
    _, comps, _ = pca(chunked(x, N), 5, dim=DIM)
    torch.testing.assert_close(comps @ comps.T, torch.eye(5), rtol=0, atol=1e-5)
    idx = comps.abs().argmax(1)
    assert (comps[torch.arange(5), idx] > 0).all()


def test_chunking_does_not_matter() -> None:
    """Streaming in chunks of 7 gives the same result as one chunk."""
    x = low_rank_data(seed=2)
    one = pca(chunked(x, N), RANK, dim=DIM)
    many = pca(chunked(x, 7), RANK, dim=DIM)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_projection_reconstructs_low_rank_data() -> None:
    """Projecting onto the components and back reconstructs the data up to the noise."""
    x = low_rank_data(seed=3)
    mean, comps, _ = pca(chunked(x, 16), RANK, dim=DIM)
    rec = (x - mean) @ comps.T @ comps + mean
    assert (rec - x).abs().max() < 0.1
    one_less = (x - mean) @ comps[:2].T @ comps[:2] + mean
    assert (one_less - x).abs().max() > 0.5


def test_bad_arguments() -> None:
    """Rank outside [1, dim] or fewer than two samples raise ValueError."""
    x = low_rank_data()
    with pytest.raises(ValueError):
        pca(chunked(x, N), DIM + 1, dim=DIM)
    with pytest.raises(ValueError):
        pca(chunked(x, N), 0, dim=DIM)
    with pytest.raises(ValueError):
        pca(chunked(x[:1], 1), 1, dim=DIM)
