"""Predefined views (exact permutations), view parsing and the random augmentations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssdd_cli import augment
from ssdd_cli.augment import DEFAULT_VIEWS, apply_view, parse_views
from ssdd_cli.errors import ConfigError


def _images(b: int = 4, c: int = 3, s: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed))


def test_rot90_is_exact_and_invertible() -> None:
    """rot90 four times is the identity; each view equals torch.rot90; rot90∘rot270 = identity."""
    x = _images()
    y = x
    for _ in range(4):
        y = apply_view(y, "rot90")
    assert torch.equal(y, x)
    for view, k in (("rot90", 1), ("rot180", 2), ("rot270", 3)):
        assert torch.equal(apply_view(x, view), torch.rot90(x, k, dims=(-2, -1)))
    assert torch.equal(apply_view(apply_view(x, "rot90"), "rot270"), x)
    assert not torch.equal(apply_view(x, "rot90"), x)


def test_views_are_permutations() -> None:
    """Every view moves pixels only: sorted values are unchanged, and a known pixel lands where it should."""
    x = _images(b=1, c=1, s=5)
    for view in ("rot90", "rot180", "rot270", "hflip", "hflip+rot90"):
        assert torch.equal(apply_view(x, view).flatten().sort().values, x.flatten().sort().values)
    # torch.rot90 with k=1 rotates counter-clockwise: top-right corner goes to the top-left
    assert apply_view(x, "rot90")[0, 0, 0, 0] == x[0, 0, 0, -1]


def test_combined_views_apply_left_to_right() -> None:
    """'hflip+rot90' = rot90(flip(x)), which differs from flip(rot90(x))."""
    x = _images()
    want = torch.rot90(x.flip(-1), 1, dims=(-2, -1))
    assert torch.equal(apply_view(x, "hflip+rot90"), want)
    assert not torch.equal(apply_view(x, "hflip+rot90"), torch.rot90(x, 1, dims=(-2, -1)).flip(-1))
    assert torch.equal(apply_view(x, "hflip"), x.flip(-1))
    assert apply_view(x, "identity") is x


def test_views_are_differentiable() -> None:
    """Gradients flow through a view (it is a permutation, so the gradient is permuted ones)."""
    x = _images().requires_grad_(True)
    apply_view(x, "hflip+rot90").mul(torch.arange(x.numel()).view_as(x)).sum().backward()
    assert torch.equal(x.grad, apply_view(torch.arange(x.numel()).view_as(x).float(), "rot270").flip(-1))


def test_parse_views() -> None:
    """Identity goes first (added when missing), combinations are kept, lists and strings both work."""
    assert parse_views("rot90,identity,rot180") == ("identity", "rot90", "rot180")
    assert parse_views("rot90") == ("identity", "rot90")
    assert parse_views(["identity", "hflip+rot90"]) == ("identity", "hflip+rot90")
    assert parse_views(" identity , rot270 ") == ("identity", "rot270")
    assert parse_views("identity+rot90") == ("identity", "rot90")
    assert parse_views(DEFAULT_VIEWS) == DEFAULT_VIEWS == ("identity", "rot90", "rot180", "rot270")


@pytest.mark.parametrize("spec, text", [
    ("identity,rot45", "unknown view 'rot45'"),
    ("identity,hflip+vflip", "unknown view 'vflip'"),
    ("rot90,rot90", "listed twice"),
    ("identity,identity", "listed twice"),
])
def test_parse_views_rejects(spec: str, text: str) -> None:
    """Unknown names and duplicates raise ConfigError with a useful message."""
    with pytest.raises(ConfigError, match=text):
        parse_views(spec)


def test_random_crop_is_a_shifted_window() -> None:
    """Each output is one window of the zero-padded input (found by exhaustive search), shape unchanged."""
    pad = 2
    x = _images(b=6, s=8) + 0.1  # strictly positive, so zero padding is distinguishable
    out = augment.random_crop(x, torch.Generator().manual_seed(3), padding=pad)
    assert out.shape == x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = []
    for i in range(x.shape[0]):
        hits = [(oy, ox) for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)
                if torch.equal(out[i], padded[i, :, oy:oy + 8, ox:ox + 8])]
        assert len(hits) == 1, f"sample {i}: {hits}"
        offsets.append(hits[0])
    assert len(set(offsets)) > 1  # offsets are drawn per sample
    assert torch.equal(augment.random_crop(x, torch.Generator().manual_seed(3), padding=0), x)


def test_random_augmentations_follow_the_generator() -> None:
    """Same generator seed → identical outputs; different seed → different outputs."""
    x = _images(b=8, s=16)
    fns = [
        lambda g: augment.crop_flip(x, g),
        lambda g: augment.barlow_twins_view(x, g, 0.2),
        lambda g: augment.random_resized_crop(x, g),
        lambda g: augment.color_jitter(x, g, p=1.0),
    ]
    for fn in fns:
        a = fn(torch.Generator().manual_seed(11))
        b = fn(torch.Generator().manual_seed(11))
        c = fn(torch.Generator().manual_seed(12))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_barlow_twins_view_range_and_shape() -> None:
    """A Barlow Twins view keeps the shape and stays in [0, 1]."""
    x = _images(b=16, s=16)
    for seed in range(3):
        v = augment.barlow_twins_view(x, torch.Generator().manual_seed(seed), solarize_p=1.0)
        assert v.shape == x.shape
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
        assert torch.isfinite(v).all()


def test_random_flip_extremes() -> None:
    """p=1 flips every image, p=0 none."""
    x = _images()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment.random_flip(x, g, p=1.0), x.flip(-1))
    assert torch.equal(augment.random_flip(x, g, p=0.0), x)


def test_normalize_round_trip() -> None:
    """Normalize then denormalize is the identity (up to float rounding); normalize uses the channel stats."""
    x = _images()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    n = augment.normalize(x, mean, std)
    torch.testing.assert_close(n[:, 1], (x[:, 1] - 0.2) / 0.25)
    torch.testing.assert_close(augment.denormalize(n, mean, std), x)
    assert torch.equal(augment.to_float(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([0.0, 1.0]))
