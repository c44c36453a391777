"""Closed-form kernel ridge regression readout (method.md §5.2)."""

from __future__ import annotations

import torch


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
    ``λ = ridge · tr(K_ss)`` (detached), ``Ŷ_t = K_ts (K_ss + λI)⁻¹ Y_s`` (by ``linalg.solve``).
    Equivalently ``Ŷ_t = Φ_t W*`` with the ridge solution ``W* = argmin ||Φ_s W − Y_s||² + λ||W||²``.

    Args:
        feat_support: ``(m, p)`` support features (differentiable).
        feat_query: ``(b, p)`` query features.
        targets: ``(m, D)`` support targets (differentiable).
        ridge: λ relative to the kernel trace.
        solve_dtype: precision of the kernel and the solve (float64 by default, for stability).

    Returns:
        ``(b, D)`` predictions in ``targets.dtype``.
    """
    m = feat_support.shape[0]
    ones_s = feat_support.new_ones(m, 1)
    ones_q = feat_query.new_ones(feat_query.shape[0], 1)
    phi_s = torch.cat([feat_support, ones_s], 1).to(solve_dtype)  # (m, p+1)
    phi_q = torch.cat([feat_query, ones_q], 1).to(solve_dtype)  # (b, p+1)
    k_ss = phi_s @ phi_s.T  # (m, m)
    k_qs = phi_q @ phi_s.T  # (b, m)
    lam = ridge * torch.trace(k_ss).detach()
    eye = torch.eye(m, dtype=solve_dtype, device=k_ss.device)
    alpha = torch.linalg.solve(k_ss + lam * eye, targets.to(solve_dtype))  # (m, D)
    return (k_qs @ alpha).to(targets.dtype)
