"""One KRR-ST outer step against the reference code (db-Lee/selfsup_dd, in ../shared/reference).

From identical pool weights, synthetic set, (augmented) real batch and teacher targets, ssdd's
:func:`~ssdd_cli.methods.distill.outer_loss` gives the reference's loss and outer gradients within
float32 tolerance, so no speed work can change the maths unseen. Skipped when the reference is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "selfsup_dd"
pytestmark = pytest.mark.skipif(not (REFERENCE / "algorithms" / "distill.py").exists(),
                                reason="reference code not found beside the checkout")


def _reference_run():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(REFERENCE))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("selfsup_dd_distill", REFERENCE / "algorithms" / "distill.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module.run
    finally:
        sys.path.remove(str(REFERENCE))


@pytest.mark.parametrize("arch, n, b", [("convnet2_xs", 12, 32), ("convnet3_s", 20, 48)])
def test_outer_step_matches_the_reference(arch: str, n: int, b: int) -> None:
    from ssdd_cli.methods.distill import outer_loss
    from ssdd_cli.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, image_size=16, out_dim=24, seed=5)
    xs0, ys0 = torch.randn(n, 3, 16, 16), torch.randn(n, 24)
    xr, target = torch.randn(b, 3, 16, 16), torch.randn(b, 24)

    # the reference: its own step function, with the same model, batch and targets
    x_ref, y_ref = xs0.clone().requires_grad_(True), ys0.clone().requires_grad_(True)
    ref_opt = torch.optim.AdamW([x_ref, y_ref], lr=0.0, weight_decay=0.0)  # lr 0: gradients only
    pool = SimpleNamespace(models=[model], update=lambda *a: None)  # the pool's online step is not compared
    args = SimpleNamespace(num_models=1, outer_grad_norm=0.0)
    ref_loss = _reference_run()(args, torch.device("cpu"), _Fixed(target), pool, ref_opt, iter([(xr, None)]),
                                lambda x: x, x_ref, y_ref)

    # ssdd
    xs, ys = xs0.clone().requires_grad_(True), ys0.clone().requires_grad_(True)
    loss = outer_loss(model, xs, ys, xr, target, ridge=1e-6, amp=False)
    gx, gy = torch.autograd.grad(loss, [xs, ys])

    torch.testing.assert_close(loss.detach(), ref_loss.detach(), rtol=1e-4, atol=1e-7)
    scale_x, scale_y = x_ref.grad.abs().max(), y_ref.grad.abs().max()
    torch.testing.assert_close(gx, x_ref.grad, rtol=0, atol=float(1e-3 * scale_x))
    torch.testing.assert_close(gy, y_ref.grad, rtol=0, atol=float(1e-3 * scale_y))
    # the comparison can fail: another ridge changes both the loss and the gradients beyond the tolerance
    other = outer_loss(model, xs, ys, xr, target, ridge=1e-1, amp=False)
    assert abs(float(other.detach()) - float(ref_loss.detach())) > 1e-4 * abs(float(ref_loss.detach()))


class _Fixed(torch.nn.Module):
    """The reference's ``target_model``: returns the given teacher targets for the batch."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.target
