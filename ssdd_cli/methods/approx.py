"""Boost's approximation networks (method.md §6.4): one small MLP per non-identity view."""

from __future__ import annotations

import torch

from ..bundle import approx_key, view_coeffs_key, view_targets_key
from ..engine import fit, make_optimizer
from ..losses import mse
from ..rng import seeded
from .synthetic import ApproxNet, SyntheticSet


def fit_approx_networks(
    synth: SyntheticSet, hidden: int, steps: int, lr: float, seed: int
) -> tuple[SyntheticSet, dict[str, dict[str, float]]]:
    """Fit one approximation network per non-identity view of ``synth``.

    Each ``h_a`` learns the coefficient shift ``Δ^a = C^a − C`` from ``C`` (MSE, Adam, full batch).
    The fit is reported as the relative error ``‖h_a(C) − Δ^a‖² / ‖Δ^a‖²`` (1.0 = no better than
    predicting no shift).

    Returns:
        A new set whose views use the networks (their stored coefficients dropped) and the fit.
    """
    base = synth.identity_coeffs().detach()
    nets: dict[str, ApproxNet] = {}
    report: dict[str, dict[str, float]] = {}
    for view in synth.views[1:]:
        target = synth.coeffs(view).detach() - base  # (m, c)
        with seeded(seed, f"approx-{view}"):
            net = ApproxNet(base.shape[1], hidden).to(base.device)
        opt = make_optimizer("adam", net.parameters(), lr)
        fit(lambda _, net=net, target=target: mse(net(base), target), opt, steps, log_every=max(steps, 1))
        with torch.no_grad():
            err = float((net(base) - target).pow(2).sum() / target.pow(2).sum().clamp(min=1e-12))
        nets[view] = net.cpu()
        report[view] = {"relative_error": err, "shift_norm": float(target.norm() / base.norm().clamp(min=1e-12))}
    stored = {view_coeffs_key(v) for v in synth.views} | {view_targets_key(v) for v in synth.views}
    tensors = {k: v for k, v in synth.stored_tensors().items() if k not in stored}
    for view, net in nets.items():
        for name, t in net.state_dict().items():
            tensors[approx_key(view, name)] = t
    rebuilt = SyntheticSet.from_tensors(tensors, views=list(synth.views), image_size=synth.image_size,
                                        channels=synth.channels, basis_size=synth.basis_size,
                                        freeze_means=synth.freeze_means)
    return rebuilt, report
