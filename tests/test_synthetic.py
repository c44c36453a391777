"""The distilled set module (method.md §6.2-6.4): decoding, the support set, gradients, storage round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssdd_cli.augment import DEFAULT_VIEWS, apply_view
from ssdd_cli.methods.approx import fit_approx_networks
from ssdd_cli.methods.synthetic import ApproxNet, SyntheticSet

C, S, B = 3, 8, 4  # channels, image side, basis side
P = C * B * B
M, U, V, D = 5, 6, 4, 10
VIEWS = ("identity", "rot90", "hflip+rot90")


def basis_set(views=VIEWS, freeze_means: bool = False, approx: bool = False, seed: int = 0) -> SyntheticSet:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    view_coeffs = {v: rnd(M, V) for v in views[1:]} if not approx else None
    nets = None
    if approx:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets = {v: ApproxNet(V, 3) for v in views[1:]}
    return SyntheticSet(views=views, image_size=S, channels=C,
                        image_basis=(rnd(P), rnd(U, P), rnd(M, U)),
                        repr_basis=(rnd(D), rnd(V, D), rnd(M, V)),
                        view_coeffs=view_coeffs, approx=nets, basis_size=B, freeze_means=freeze_means)


def test_decode_matches_formula() -> None:
    """X = Up(reshape(μ_x + C_x B_x)) with bilinear, align_corners=False; y = μ_y + C_y B_y."""
    s = basis_set()
    with torch.no_grad():
        flat = s.image_mean + s.image_coeffs @ s.image_basis
        want = F.interpolate(flat.view(M, C, B, B), size=(S, S), mode="bilinear", align_corners=False)
        torch.testing.assert_close(s.decode_images(), want, rtol=0, atol=0)
        assert s.decode_images().shape == (M, C, S, S)
        # the mean is added before upsampling: it matters (so the check above can fail)
        no_mean = F.interpolate((s.image_coeffs @ s.image_basis).view(M, C, B, B), size=(S, S), mode="bilinear",
                                align_corners=False)
        assert (no_mean - want).abs().max() > 1e-3
        torch.testing.assert_close(s.decode_targets(s.repr_coeffs), s.repr_mean + s.repr_coeffs @ s.repr_basis)


def test_support_is_view_major() -> None:
    """support() has |A|·m rows; row a·m+i = apply_view(x_i, a) with the view's own target."""
    s = basis_set()
    with torch.no_grad():
        xs, ys = s.support()
        x = s.decode_images()
    assert xs.shape == (len(VIEWS) * M, C, S, S) and ys.shape == (len(VIEWS) * M, D)
    for a, view in enumerate(VIEWS):
        for i in range(M):
            assert torch.equal(xs[a * M + i], apply_view(x[i:i + 1], view)[0])
        coeffs = s.repr_coeffs if view == "identity" else s.view_coeffs[view.replace("+", "_plus_")]
        torch.testing.assert_close(ys[a * M:(a + 1) * M], (s.repr_mean + coeffs @ s.repr_basis).detach())
    # a subset of views
    xs1, ys1 = s.support(("identity",))
    assert xs1.shape[0] == M and torch.equal(xs1.detach(), x)


def test_gradients_reach_every_learnable_tensor() -> None:
    """A loss on support() gives a non-zero gradient to every learnable tensor."""
    s = basis_set()
    xs, ys = s.support()
    (xs.pow(2).mean() + ys.pow(3).mean()).backward()
    names = {n for n, _ in s.named_parameters()}
    expected = {"image_basis", "image_mean", "image_coeffs", "repr_basis", "repr_mean", "repr_coeffs",
                "view_coeffs.rot90", "view_coeffs.hflip_plus_rot90"}
    assert names == expected
    for n, p in s.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_gradients_reach_approx_networks_and_pixels() -> None:
    """With approximation networks and with pixel images/targets every parameter gets a gradient."""
    s = basis_set(approx=True)
    xs, ys = s.support()
    (xs.pow(2).mean() + ys.pow(2).mean()).backward()
    assert any(n.startswith("approx.") for n, _ in s.named_parameters())
    for n, p in s.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    pix = SyntheticSet(views=("identity", "rot180"), image_size=S, channels=C, images=torch.randn(M, C, S, S),
                       targets=torch.randn(M, D), view_coeffs={"rot180": torch.randn(M, D)})
    xs, ys = pix.support()
    (xs.pow(2).mean() + ys.pow(2).mean()).backward()
    for n, p in pix.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_freeze_means() -> None:
    """freeze_means keeps μ_x and μ_y out of the optimisation (no grad), the rest still learns."""
    s = basis_set(freeze_means=True)
    xs, ys = s.support()
    (xs.pow(2).mean() + ys.pow(2).mean()).backward()
    assert not s.image_mean.requires_grad and s.image_mean.grad is None
    assert not s.repr_mean.requires_grad and s.repr_mean.grad is None
    assert s.image_basis.grad is not None and s.repr_coeffs.grad is not None


@pytest.mark.parametrize("approx", [False, True])
def test_stored_tensors_round_trip(approx: bool) -> None:
    """stored_tensors → from_tensors reproduces support() exactly, with the bundle key names."""
    s = basis_set(approx=approx)
    tensors = s.stored_tensors()
    base = {"image_basis", "image_mean", "image_coeffs", "repr_basis", "repr_mean", "repr_coeffs"}
    if approx:
        extra = {f"approx.{v}.{n}" for v in VIEWS[1:] for n in ("0.weight", "0.bias", "2.weight", "2.bias")}
    else:
        extra = {f"view_coeffs.{v}" for v in VIEWS[1:]}
    assert set(tensors) == base | extra
    assert all(not t.requires_grad and t.dtype == torch.float32 for t in tensors.values())
    back = SyntheticSet.from_tensors(tensors, views=list(VIEWS), image_size=S, channels=C, basis_size=B)
    with torch.no_grad():
        xa, ya = s.support()
        xb, yb = back.support()
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_pixel_round_trip() -> None:
    """Pixel sets store images/targets/view_targets and round-trip exactly."""
    pix = SyntheticSet(views=("identity", "rot90"), image_size=S, channels=C, images=torch.randn(M, C, S, S),
                       targets=torch.randn(M, D), view_coeffs={"rot90": torch.randn(M, D)})
    tensors = pix.stored_tensors()
    assert set(tensors) == {"images", "targets", "view_targets.rot90"}
    back = SyntheticSet.from_tensors(tensors, views=["identity", "rot90"], image_size=S, channels=C)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(pix.support(), back.support()))


def test_constructor_checks() -> None:
    """Exactly one of images/bases and targets/bases; every non-identity view needs coefficients or a network."""
    with pytest.raises(ValueError):
        SyntheticSet(views=("identity",), image_size=S, channels=C, targets=torch.randn(M, D))
    with pytest.raises(ValueError):
        SyntheticSet(views=("identity",), image_size=S, channels=C, images=torch.randn(M, C, S, S))
    with pytest.raises(ValueError, match="rot90"):
        SyntheticSet(views=("identity", "rot90"), image_size=S, channels=C, images=torch.randn(M, C, S, S),
                     targets=torch.randn(M, D))


def test_fit_approx_networks_learns_a_real_shift() -> None:
    """With C^a = C + (C A + b) the networks learn the shift: relative error < 0.5, far better than no shift."""
    m, v = 32, 4
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(m, v, generator=g)
    views = DEFAULT_VIEWS
    shifts = {}
    view_coeffs = {}
    for view in views[1:]:
        a, b = torch.randn(v, v, generator=g) * 0.5, torch.randn(v, generator=g)
        shifts[view] = coeffs @ a + b
        view_coeffs[view] = coeffs + shifts[view]
    s = SyntheticSet(views=views, image_size=S, channels=C,
                     image_basis=(torch.zeros(P), torch.randn(U, P, generator=g), torch.randn(m, U, generator=g)),
                     repr_basis=(torch.zeros(D), torch.randn(v, D, generator=g), coeffs),
                     view_coeffs=view_coeffs, basis_size=B)
    rebuilt, report = fit_approx_networks(s, hidden=8, steps=500, lr=1e-2, seed=0)
    assert set(report) == set(views[1:])
    with torch.no_grad():
        for view in views[1:]:
            assert report[view]["relative_error"] < 0.5, report
            assert report[view]["shift_norm"] > 0.1
            pred = rebuilt.coeffs(view)
            err = (pred - view_coeffs[view]).pow(2).sum()
            no_shift = (coeffs - view_coeffs[view]).pow(2).sum()
            assert float(err / no_shift) == pytest.approx(report[view]["relative_error"], rel=1e-4, abs=1e-6)
            assert err < 0.5 * no_shift
    tensors = rebuilt.stored_tensors()
    assert not any(k.startswith("view_coeffs.") for k in tensors)
    assert tensors["approx.rot90.0.weight"].shape == (8, v)
    # deterministic per seed
    again, report2 = fit_approx_networks(s, hidden=8, steps=500, lr=1e-2, seed=0)
    assert report2 == report


@pytest.mark.parametrize("views", [("identity", "rot90", "rot180", "rot270"), ("rot90", "identity", "hflip+rot90"),
                                   ("hflip",)])
@pytest.mark.parametrize("basis_size", [8, 16])
def test_rebuild_equals_support(views, basis_size: int) -> None:  # type: ignore[no-untyped-def]
    """The fast expansion path (upsampling folded into the bases, views as pixel gathers) gives support()'s pairs."""
    g = torch.Generator().manual_seed(3)
    c, s, u, v, d, m = 3, 16, 10, 6, 12, 5
    p = c * basis_size * basis_size
    synth = SyntheticSet(
        views=("identity", *[w for w in views if w != "identity"]), image_size=s, channels=c,
        image_basis=(torch.randn(p, generator=g), torch.randn(u, p, generator=g), torch.randn(m, u, generator=g)),
        repr_basis=(torch.randn(d, generator=g), torch.randn(v, d, generator=g), torch.randn(m, v, generator=g)),
        view_coeffs={w: torch.randn(m, v, generator=g) for w in views if w != "identity"}, basis_size=basis_size)
    with torch.no_grad():
        x0, y0 = synth.support(views)
    x1, y1 = synth.rebuild(views)
    torch.testing.assert_close(x1, x0, rtol=1e-5, atol=1e-5)
    assert torch.equal(y1, y0)
    assert not torch.equal(x1[:m], x1[m:2 * m])  # the views really differ
    # into preallocated memory: the same pairs, written in place; a wrong shape is refused
    out = (torch.full_like(x1, float("nan")), torch.full_like(y1, float("nan")))
    x2, y2 = synth.rebuild(views, out=out)
    assert x2.data_ptr() == out[0].data_ptr() and y2.data_ptr() == out[1].data_ptr()
    assert torch.equal(x2, x1) and torch.equal(y2, y1)
    with pytest.raises(ValueError, match="out= must be"):
        synth.rebuild(views, out=(x1[:-1], y1))
    with pytest.raises(ValueError, match="out= must be"):
        synth.rebuild(views, out=(x1.double(), y1))


def _double(s: SyntheticSet) -> SyntheticSet:
    return s.double()


@pytest.mark.parametrize("approx", [False, True])
def test_orthonormalise_keeps_every_pair(approx: bool) -> None:
    """QR re-orthonormalisation (method.md §6.2): orthonormal basis rows, the same support to float64 rounding."""
    s = _double(basis_set(approx=approx))
    with torch.no_grad():
        xs0, ys0 = (t.clone() for t in s.support())
        ref_x = s.image_mean + s.image_coeffs @ s.image_basis  # independent of the QR: the decoded flat images
    changed = s.orthonormalise_()
    eye = lambda n: torch.eye(n, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        xs1, ys1 = s.support()
        torch.testing.assert_close(s.image_basis @ s.image_basis.T, eye(U), rtol=0, atol=1e-12)
        torch.testing.assert_close(s.repr_basis @ s.repr_basis.T, eye(V), rtol=0, atol=1e-12)
        torch.testing.assert_close(s.image_mean + s.image_coeffs @ s.image_basis, ref_x, rtol=0, atol=1e-10)
    torch.testing.assert_close(xs1, xs0, rtol=0, atol=1e-10)
    torch.testing.assert_close(ys1, ys0, rtol=0, atol=1e-10)
    # the span is kept, the random bases were far from orthonormal, so the coordinates did change
    assert not torch.allclose(s.image_coeffs, basis_set(approx=approx).image_coeffs.double(), atol=1e-3)
    names = {id(p): n for n, p in s.named_parameters()}
    got = sorted(names[id(p)] for p in changed)
    extra = ([f"approx.{k}.{n}" for k in ("hflip_plus_rot90", "rot90") for n in ("0.weight", "2.bias", "2.weight")]
             if approx else ["view_coeffs.hflip_plus_rot90", "view_coeffs.rot90"])
    assert got == sorted(["image_basis", "image_coeffs", "repr_basis", "repr_coeffs", *extra])


def test_orthonormalise_leaves_an_orthonormal_basis_alone() -> None:
    """Signs are fixed (diag R > 0): a second pass, or a PCA basis, is unchanged."""
    s = _double(basis_set(approx=True))
    s.orthonormalise_()
    before = {n: p.detach().clone() for n, p in s.named_parameters()}
    s.orthonormalise_()
    for n, p in s.named_parameters():
        torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=1e-12, msg=n)


def test_orthonormalise_refuses_a_rank_deficient_basis() -> None:
    s = basis_set()
    with torch.no_grad():
        s.image_basis[1] = 2 * s.image_basis[0]
    with pytest.raises(FloatingPointError, match="lost rank"):
        s.orthonormalise_()


def test_orthonormalisation_drops_the_moments_it_invalidates() -> None:
    """Every K steps the bases are re-orthonormalised and AdamW forgets the moments of exactly what changed."""
    from ssdd_cli.methods.distill import _with_orthonormalisation

    s = basis_set()
    opt = torch.optim.AdamW(s.parameters(), lr=1e-3)
    xs, ys = s.support()
    (xs.sum() + ys.sum()).backward()
    opt.step()
    assert len(opt.state) == len(list(s.parameters()))
    calls: list[int] = []
    after = _with_orthonormalisation(calls.append, s, opt, every=3)
    after(0)
    after(1)
    assert len(opt.state) == len(list(s.parameters())) and calls == [0, 1]
    after(2)
    kept = {n for n, p in s.named_parameters() if p in opt.state}
    assert kept == {"image_mean", "repr_mean"} and calls == [0, 1, 2]
    torch.testing.assert_close(s.image_basis @ s.image_basis.T, torch.eye(U), rtol=0, atol=1e-5)
