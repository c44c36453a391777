"""Closed-form kernel ridge regression readout (method.md §5.2)."""

from __future__ import annotations

import torch


def _spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``a x = b`` for a symmetric positive-definite ``a``: Cholesky, or LU where Cholesky fails.

    Cholesky costs half of LU; ``a`` is a Gram matrix plus ``λI``, positive definite unless λ
    underflows against a rank-deficient Gram, where the general solve still answers. ``cholesky_ex``
    reports failure in a tensor; reading it is the step's one host synchronisation on a GPU.
    """
    chol, info = torch.linalg.cholesky_ex(a)
    if bool(info.item() == 0):
        return torch.cholesky_solve(b, chol)
    return torch.linalg.solve(a, b)


def krr_predict(
    feat_support: torch.Tensor,
    feat_query: torch.Tensor,
    targets: torch.Tensor,
    *,
    ridge: float = 1e-6,
    solve_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Predict query targets from support features and targets by kernel ridge regression.

    ``Φ_s = [φ(X_s), 1]``, ``Φ_t = [φ(X_t), 1]``, ``K_ss = Φ_s Φ_sᵀ``, ``K_ts = Φ_t Φ_sᵀ``,
    ``λ = ridge · tr(K_ss)`` (detached), ``Ŷ_t = K_ts (K_ss + λI)⁻¹ Y_s``.
    Equivalently ``Ŷ_t = Φ_t W*`` with the ridge solution ``W* = (Φ_sᵀΦ_s + λI)⁻¹ Φ_sᵀ Y_s``: that
    primal form is used when the support has more rows than ``Φ`` has columns (an ``(p+1)²`` system
    instead of ``m²``; the same prediction up to rounding). Both solve by Cholesky, falling back to LU.

    Args:
        feat_support: ``(m, p)`` support features (differentiable).
        feat_query: ``(b, p)`` query features.
        targets: ``(m, D)`` support targets (differentiable).
        ridge: λ relative to the kernel trace.
        solve_dtype: precision of the kernel and the solve (float64 by default, for stability).

    Returns:
        ``(b, D)`` predictions in ``targets.dtype``.
    """
    m, p = feat_support.shape
    phi_s = torch.cat([feat_support, feat_support.new_ones(m, 1)], 1).to(solve_dtype)  # (m, p+1)
    phi_q = torch.cat([feat_query, feat_query.new_ones(feat_query.shape[0], 1)], 1).to(solve_dtype)  # (b, p+1)
    ys = targets.to(solve_dtype)
    # tr(Φ_s Φ_sᵀ) = tr(Φ_sᵀ Φ_s) = ||Φ_s||²: the same λ in both forms
    lam = ridge * phi_s.detach().square().sum()
    if m > p + 1:
        gram = phi_s.T @ phi_s  # (p+1, p+1)
        eye = torch.eye(p + 1, dtype=solve_dtype, device=gram.device)
        w = _spd_solve(gram + lam * eye, phi_s.T @ ys)  # (p+1, D)
        return (phi_q @ w).to(targets.dtype)
    k_ss = phi_s @ phi_s.T  # (m, m)
    eye = torch.eye(m, dtype=solve_dtype, device=k_ss.device)
    alpha = _spd_solve(k_ss + lam * eye, ys)  # (m, D)
    return ((phi_q @ phi_s.T) @ alpha).to(targets.dtype)
