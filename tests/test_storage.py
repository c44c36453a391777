"""Storage accounting (method.md §6.6): the worked example, automatic sizing and the refusals."""

from __future__ import annotations

import pytest

from ssdd_cli.augment import DEFAULT_VIEWS
from ssdd_cli.bundle import group_of
from ssdd_cli.errors import ConfigError
from ssdd_cli.storage import BoostSize, auto_size, boost_shapes, storage_report

CIFAR = dict(channels=3, image_size=32, repr_dim=512)


def report_of(size: BoostSize, views=DEFAULT_VIEWS, **kw):  # type: ignore[no-untyped-def]
    shapes = boost_shapes(size, channels=3, repr_dim=512, views=views, image_size=32, **kw)
    return storage_report(shapes, image_shape=(3, 32, 32), label="boost", num_images=size.num_images)


def test_reference_config_n100() -> None:
    """N=100 on CIFAR-100 gives the reference U=V=200, m=100, 16-px bases: 302,692 floats = 98.53 image-eq."""
    size = auto_size(100, views=DEFAULT_VIEWS, **CIFAR)
    assert size == BoostSize(num_images=100, image_rank=200, repr_rank=200, approx_hidden=4, basis_size=16)
    rep = report_of(size)
    assert rep.total_floats == 302_692
    assert rep.image_numel == 3072
    assert round(rep.image_equivalents, 2) == 98.53
    assert rep.cost == pytest.approx(302_692 / 3072)
    assert rep.fits(100) and not rep.fits(98)
    # the table of method.md §6.6, row by row
    f = rep.floats
    assert f["image_basis"] == 153_600 and f["image_mean"] == 768 and f["image_coeffs"] == 20_000
    assert f["repr_basis"] == 102_400 and f["repr_mean"] == 512 and f["repr_coeffs"] == 20_000
    assert sum(n for k, n in f.items() if k.startswith("approx.")) == 5_412
    assert rep.groups == {"bases": 256_000, "means": 1_280, "coefficients": 40_000, "networks": 5_412}
    assert "302,692 floats = 98.53 image-eq." in rep.describe()


def test_n25_and_n1000() -> None:
    """N=25 → U=V=50, m=25 (22.5 image-eq.); N=1000 → the rank caps bind, U=768, V=512, m=1722."""
    small = auto_size(25, views=DEFAULT_VIEWS, **CIFAR)
    assert (small.num_images, small.image_rank, small.repr_rank) == (25, 50, 50)
    assert report_of(small).image_equivalents == pytest.approx(22.5, abs=0.01)
    big = auto_size(1000, views=DEFAULT_VIEWS, **CIFAR)
    assert (big.num_images, big.image_rank, big.repr_rank) == (1722, 768, 512)
    assert report_of(big).fits(1000)
    one_more = BoostSize(1723, 768, 512, 4, 16)
    assert not report_of(one_more).fits(1000)  # m is the largest count that fits


def test_images_sizing_buys_images_with_the_rest() -> None:
    """sizing="images": U = V = N and m = the largest count that fits, with no cap at N."""
    size = auto_size(100, views=DEFAULT_VIEWS, sizing="images", **CIFAR)
    assert (size.num_images, size.image_rank, size.repr_rank) == (876, 100, 100)
    assert report_of(size).fits(100)
    assert not report_of(BoostSize(877, 100, 100, 4, 16)).fits(100)
    # where the rank caps bind both rules agree
    assert auto_size(1000, views=DEFAULT_VIEWS, sizing="images", **CIFAR) == auto_size(1000, views=DEFAULT_VIEWS,
                                                                                    **CIFAR)
    # explicit sizes still win over the rule
    assert auto_size(100, views=DEFAULT_VIEWS, sizing="images", num_images=90, **CIFAR).num_images == 90
    with pytest.raises(ConfigError, match="sizing"):
        auto_size(100, views=DEFAULT_VIEWS, sizing="most", **CIFAR)


def test_explicit_over_budget_raises_with_breakdown() -> None:
    """An explicit configuration over budget is refused and the message carries the breakdown."""
    with pytest.raises(ConfigError) as exc:
        auto_size(100, views=DEFAULT_VIEWS, num_images=150, **CIFAR)
    msg = str(exc.value)
    assert "m=150" in msg and "--budget 100" in msg
    assert "bases 256,000" in msg and "coefficients" in msg and "networks" in msg
    # the same explicit config within budget is kept as given
    assert auto_size(100, views=DEFAULT_VIEWS, num_images=90, **CIFAR).num_images == 90


def test_bases_alone_over_budget_raises() -> None:
    """Ranks so large that the bases alone exceed the budget are refused."""
    with pytest.raises(ConfigError, match="bases alone"):
        auto_size(10, views=DEFAULT_VIEWS, image_rank=200, **CIFAR)


@pytest.mark.parametrize("budget", [0, -3])
def test_nonpositive_budget_raises(budget: int) -> None:
    """Budgets ≤ 0 are refused."""
    with pytest.raises(ConfigError, match="--budget"):
        auto_size(budget, views=DEFAULT_VIEWS, **CIFAR)


def test_rank_out_of_range_raises() -> None:
    """Ranks beyond P or D are refused."""
    with pytest.raises(ConfigError, match="ranks out of range"):
        auto_size(1000, views=DEFAULT_VIEWS, repr_rank=513, **CIFAR)


def test_pixel_methods_cost_m() -> None:
    """KRR-ST / random bundles are charged m (targets listed but not charged); boost is charged every float."""
    shapes = {"images": (10, 3, 32, 32), "targets": (10, 512)}
    from ssdd_cli.methods.registry import get_method, list_methods

    pixel = [m for m in list_methods() if get_method(m).pixel_storage]
    assert sorted(pixel) == ["krr_st", "random"]
    for method in pixel:
        rep = storage_report(shapes, image_shape=(3, 32, 32), label=method, num_images=10, images_only=True)
        assert rep.cost == 10.0
        assert rep.total_floats == 10 * 3072 + 10 * 512
        assert rep.image_equivalents == pytest.approx(10 * (3072 + 512) / 3072)
    boost = storage_report(shapes, image_shape=(3, 32, 32), label="boost", num_images=10)
    assert boost.cost == pytest.approx(10 * (3072 + 512) / 3072)


def test_no_approx_costs_view_coeffs() -> None:
    """Without approximation networks each non-identity view stores its own (m, V) coefficients."""
    size = BoostSize(100, 200, 200, 4, 16)
    no_approx = report_of(size, approx=False)
    identity_only = report_of(size, views=("identity",))
    assert no_approx.total_floats == identity_only.total_floats + 3 * 100 * 200
    assert sorted(k for k in no_approx.floats if k.startswith("view_coeffs.")) == [
        "view_coeffs.rot180", "view_coeffs.rot270", "view_coeffs.rot90"]
    assert not any(k.startswith("approx.") for k in no_approx.floats)
    # the reference config without networks breaks the budget (method.md §6.6), and auto-sizing shrinks m
    assert no_approx.total_floats == 302_692 - 5_412 + 60_000 and not no_approx.fits(100)
    with pytest.raises(ConfigError):
        auto_size(100, views=DEFAULT_VIEWS, approx=False, num_images=100, **CIFAR)
    auto = auto_size(100, views=DEFAULT_VIEWS, approx=False, **CIFAR)
    assert auto.num_images == 49 and report_of(auto, approx=False).fits(100)


def test_no_bases_stores_pixels() -> None:
    """The pixel ablation of boost stores images and targets (and per-view targets) and is charged for all."""
    size = BoostSize(5, 0, 0, 4, 32)
    shapes = boost_shapes(size, channels=3, repr_dim=512, views=DEFAULT_VIEWS, bases=False, approx=False,
                          image_size=32)
    assert shapes["images"] == (5, 3, 32, 32) and shapes["targets"] == (5, 512)
    assert shapes["view_targets.rot90"] == (5, 512)


def test_group_names() -> None:
    """Tensor keys map to their display groups."""
    assert group_of("image_basis") == "bases" and group_of("repr_mean") == "means"
    assert group_of("view_coeffs.rot90") == "coefficients" and group_of("approx.rot90.0.weight") == "networks"
    assert group_of("images") == "images" and group_of("view_targets.hflip") == "targets"
    assert group_of("something") == "other"


def test_auto_size_shrinks_ranks_when_bases_leave_no_room() -> None:
    """16-px images with a 256-d teacher: 2N bases alone exceed N=20, so both ranks shrink until N/2 images fit."""
    size = auto_size(20, channels=3, image_size=16, repr_dim=256, views=DEFAULT_VIEWS)
    assert size.image_rank < 40 and size.repr_rank < 40
    assert size.num_images >= 10
    shapes = boost_shapes(size, channels=3, repr_dim=256, views=DEFAULT_VIEWS, image_size=16)
    assert storage_report(shapes, image_shape=(3, 16, 16), label="boost", num_images=size.num_images).fits(20)


def test_images_sizing_on_a_small_source_names_the_fix(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """More images than the source holds: the error says how to ask for fewer (incl. the paper sizing)."""
    from ssdd_cli.config import distill_config
    from ssdd_cli.methods.distill import plan_distillation

    config = distill_config("boost", "cpu", 16, budget=10)
    assert config.sizing == "images"
    with pytest.raises(ConfigError, match=r"has only 64; lower --budget or --num-images, or --set sizing=paper"):
        plan_distillation(config, tiny_data, 32)
    assert plan_distillation(distill_config("boost", "cpu", 16, budget=10, sizing="paper"), tiny_data, 32).size.num_images <= 10
