"""Kernel ridge regression readout (method.md §5.2) against explicit float64 references."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli.methods.krr import krr_predict


def _inputs(m: int = 8, b: int = 5, p: int = 6, d: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    fs = torch.randn(m, p, generator=g, dtype=dtype)
    fq = torch.randn(b, p, generator=g, dtype=dtype)
    ys = torch.randn(m, d, generator=g, dtype=dtype)
    return fs, fq, ys


def primal_ridge(fs: torch.Tensor, fq: torch.Tensor, ys: torch.Tensor, ridge: float) -> torch.Tensor:
    """``Φ_q W`` with ``W = (Φ_sᵀΦ_s + λI)⁻¹ Φ_sᵀ Y_s``, ``λ = ridge·tr(Φ_sΦ_sᵀ)``, all in float64."""
    fs, fq, ys = fs.double(), fq.double(), ys.double()
    phi_s = torch.cat([fs, torch.ones(fs.shape[0], 1, dtype=torch.float64)], 1)
    phi_q = torch.cat([fq, torch.ones(fq.shape[0], 1, dtype=torch.float64)], 1)
    lam = ridge * torch.trace(phi_s @ phi_s.T)
    eye = torch.eye(phi_s.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(phi_s.T @ phi_s + lam * eye, phi_s.T @ ys)
    return phi_q @ w


@pytest.mark.parametrize("ridge", [1e-6, 1e-2, 0.3])
def test_matches_primal_ridge_solution(ridge: float) -> None:
    """Dual (kernel) prediction equals the primal ridge solution with a ones column, λ = ridge·tr(K_ss)."""
    fs, fq, ys = _inputs()
    got = krr_predict(fs, fq, ys, ridge=ridge)
    want = primal_ridge(fs, fq, ys, ridge)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_ridge_value_matters() -> None:
    """Sharpness check: a different λ gives a measurably different prediction (so the test above can fail)."""
    fs, fq, ys = _inputs()
    assert (krr_predict(fs, fq, ys, ridge=1e-2) - primal_ridge(fs, fq, ys, 2e-2)).abs().max() > 1e-3
    # without the ones column the answer differs too: shift the features, the bias absorbs it only with the column
    shifted = krr_predict(fs + 3.0, fq + 3.0, ys, ridge=1e-2)
    assert (shifted - krr_predict(fs, fq, ys, ridge=1e-2)).abs().max() > 1e-4


def test_float32_inputs_solved_in_float64() -> None:
    """float32 inputs give float32 outputs close to the float64 reference (solve in float64)."""
    fs, fq, ys = _inputs(dtype=torch.float32)
    got = krr_predict(fs, fq, ys, ridge=1e-2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), primal_ridge(fs, fq, ys, 1e-2), rtol=1e-5, atol=1e-5)


def test_lambda_is_detached() -> None:
    """The gradient wrt the support features treats λ as a constant (trace not differentiated)."""
    ridge = 0.1  # large, so that differentiating λ would change the gradient visibly
    fs, fq, ys = _inputs(seed=1)
    fs.requires_grad_(True)
    weights = torch.randn(fq.shape[0], ys.shape[1], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (g_impl,) = torch.autograd.grad((krr_predict(fs, fq, ys, ridge=ridge) * weights).sum(), fs)

    def reference(fs_: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        phi_s = torch.cat([fs_, torch.ones(fs_.shape[0], 1, dtype=torch.float64)], 1)
        phi_q = torch.cat([fq, torch.ones(fq.shape[0], 1, dtype=torch.float64)], 1)
        k = phi_s @ phi_s.T
        return phi_q @ phi_s.T @ torch.linalg.solve(k + lam * torch.eye(k.shape[0], dtype=torch.float64), ys)

    phi = torch.cat([fs.detach(), torch.ones(fs.shape[0], 1, dtype=torch.float64)], 1)
    lam_const = ridge * torch.trace(phi @ phi.T)
    (g_const,) = torch.autograd.grad((reference(fs, lam_const) * weights).sum(), fs)
    torch.testing.assert_close(g_impl, g_const, rtol=1e-8, atol=1e-10)

    # and it is NOT the gradient with λ differentiated (so the check above can fail)
    def lam_live(fs_: torch.Tensor) -> torch.Tensor:
        p = torch.cat([fs_, torch.ones(fs_.shape[0], 1, dtype=torch.float64)], 1)
        return ridge * torch.trace(p @ p.T)

    (g_live,) = torch.autograd.grad((reference(fs, lam_live(fs)) * weights).sum(), fs)
    assert (g_live - g_const).abs().max() > 1e-6


def test_support_permutation_invariance() -> None:
    """Permuting the support set (features and targets together) leaves predictions unchanged."""
    fs, fq, ys = _inputs(m=10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(5))
    a = krr_predict(fs, fq, ys, ridge=1e-3)
    b = krr_predict(fs[perm], fq, ys[perm], ridge=1e-3)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # permuting only the targets does change them
    assert (krr_predict(fs, fq, ys[perm], ridge=1e-3) - a).abs().max() > 1e-3


def test_query_permutation_permutes_outputs() -> None:
    """Permuting the query rows permutes the predictions."""
    fs, fq, ys = _inputs()
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(krr_predict(fs, fq[perm], ys, ridge=1e-3), krr_predict(fs, fq, ys, ridge=1e-3)[perm])


def test_gradcheck() -> None:
    """``torch.autograd.gradcheck`` in float64.

    With ``ridge > 0`` only the query features and targets are checked: finite differences in the
    support features would move λ, which is deliberately detached (see above). The support features
    are checked with ``ridge = 0`` (λ = 0, a full-rank 3×3 kernel).
    """
    fs, fq, ys = _inputs(m=4, b=3, p=3, d=2, seed=7)
    fq.requires_grad_(True)
    ys.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda b, c: krr_predict(fs, b, c, ridge=1e-2), (fq, ys), eps=1e-6, atol=1e-5)
    fs0, fq0, ys0 = _inputs(m=3, b=2, p=4, d=2, seed=8)
    fs0.requires_grad_(True)
    ys0.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, c: krr_predict(a, fq0, c, ridge=0.0), (fs0, ys0), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("ridge", [1e-6, 1e-2])
def test_primal_form_when_support_exceeds_features(ridge: float) -> None:
    """More support rows than feature columns (the primal ``(p+1)²`` system): same prediction and gradients."""
    fs, fq, ys = _inputs(m=40, b=7, p=6, d=3, seed=4)
    fs.requires_grad_(True)
    ys.requires_grad_(True)
    got = krr_predict(fs, fq, ys, ridge=ridge)
    torch.testing.assert_close(got, primal_ridge(fs, fq, ys, ridge), rtol=1e-9, atol=1e-9)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    g_got = torch.autograd.grad((got * weights).sum(), (fs, ys))

    def dual(fs_: torch.Tensor, ys_: torch.Tensor) -> torch.Tensor:  # the kernel form, λ constant
        phi_s = torch.cat([fs_, torch.ones(fs_.shape[0], 1, dtype=torch.float64)], 1)
        phi_q = torch.cat([fq, torch.ones(fq.shape[0], 1, dtype=torch.float64)], 1)
        k = phi_s @ phi_s.T
        lam = ridge * torch.trace(k).detach()
        return phi_q @ phi_s.T @ torch.linalg.solve(k + lam * torch.eye(k.shape[0], dtype=torch.float64), ys_)

    g_want = torch.autograd.grad((dual(fs, ys) * weights).sum(), (fs, ys))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_failed_cholesky_falls_back_to_lu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Cholesky reports failure (a system not numerically positive definite) the LU solve answers."""
    from ssdd_cli.methods import krr

    calls = {"lu": 0}
    real_solve = torch.linalg.solve

    def failing_cholesky(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full_like(a, float("nan")), torch.ones((), dtype=torch.int32)

    def counting_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls["lu"] += 1
        return real_solve(a, b)

    monkeypatch.setattr(krr.torch.linalg, "cholesky_ex", failing_cholesky)
    monkeypatch.setattr(krr.torch.linalg, "solve", counting_solve)
    fs, fq, ys = _inputs(seed=6)
    out = krr.krr_predict(fs, fq, ys, ridge=1e-2)
    assert calls["lu"] == 1
    torch.testing.assert_close(out, primal_ridge(fs, fq, ys, 1e-2), rtol=1e-9, atol=1e-9)
