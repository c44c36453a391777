"""BatchNorm folded into convolutions: the same function as the unfolded model, in eval mode."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli.models import create_model
from ssdd_cli.models.fold import embed_folded, folded_copy
from ssdd_cli.models.registry import list_models


def _random_stats(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (fresh ones fold to the identity and test nothing)."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g))
            mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            mod.weight.data.copy_(torch.randn(n, generator=g))
            mod.bias.data.copy_(torch.randn(n, generator=g))
    return model.eval()


@pytest.mark.parametrize("arch", list_models())
def test_folded_copy_represents_the_same(arch: str) -> None:
    """Every registry model: the folded copy's output equals ``represent`` within float32 rounding; the original is untouched."""
    model = _random_stats(create_model(arch, image_size=32, seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.represent(x).double()
        got = folded_copy(model)(x).double()
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_folded_copy_removes_batchnorm() -> None:
    """The folded ResNet holds no BatchNorm (so the fold really happened and the check above can fail)."""
    model = _random_stats(create_model("resnet18", image_size=32, seed=0))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded_copy(model).modules())


@pytest.mark.parametrize("arch", ["convnet3_s", "convnet2_xs", "resnet10"])
def test_embed_folded(arch: str) -> None:
    """On the fly from the current weights, eval mode: ``embed``'s features; in training mode, ``embed`` itself."""
    model = _random_stats(create_model(arch, image_size=32, seed=0))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.embed(x)
        got = embed_folded(model, x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
        model.train()
        torch.testing.assert_close(embed_folded(model, x), model.embed(x))
        # BatchNorm in training mode normalises by the batch: not the eval function
        assert (model.embed(x) - want).abs().max() > 1e-3
