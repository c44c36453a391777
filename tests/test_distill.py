"""End-to-end distillation on the tiny set: budget, bundle round trip, exact expansion, determinism, ablations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_distill_config

from ssdd_cli import engine
from ssdd_cli.api import distill
from ssdd_cli.bundle import load_bundle, save_bundle
from ssdd_cli.errors import ConfigError
from ssdd_cli.expand import expand_pairs
from ssdd_cli.methods import distill as distill_mod
from ssdd_cli.methods.distill import plan_distillation

CPU = torch.device("cpu")
APPROX = [f"approx.{v}.{n}" for v in ("rot90", "rot180", "rot270") for n in ("0.weight", "0.bias", "2.weight", "2.bias")]
BASES = ["image_basis", "image_mean", "image_coeffs", "repr_basis", "repr_mean", "repr_coeffs"]


def equal_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def check_result(res, cfg, data, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Within budget, planned storage = stored storage, saves, loads and expands exactly."""
    assert res.meta.storage["cost"] <= cfg.budget + 1e-9
    plan = plan_distillation(cfg, data, 32).report
    stored = {k: v.numel() for k, v in res.tensors.items()}
    assert plan.floats == stored  # what was planned (and charged) is what is stored
    assert plan.total_floats == res.meta.storage["total_floats"]
    save_bundle(path, res.tensors, res.meta)
    bundle = load_bundle(path)
    assert bundle.storage().fits(cfg.budget)
    images, targets = expand_pairs(bundle)
    with torch.no_grad():
        xs, ys = res.synthetic.support()
    # expansion folds the upsampling into the bases: the same pairs up to float rounding
    torch.testing.assert_close(images, xs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(targets, ys, rtol=1e-5, atol=1e-5)
    m, views = res.meta.counts["m"], len(cfg.views)
    assert images.shape == (views * m, 3, 16, 16) and targets.shape == (views * m, 32)
    assert torch.isfinite(images).all() and torch.isfinite(targets).all()


@pytest.mark.parametrize("method", ["krr_st", "boost"])
def test_end_to_end(method: str, tiny_results, tiny_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Both methods: a valid bundle within budget whose expansion is exactly the distilled support set."""
    res = tiny_results[method]
    cfg = tiny_distill_config(method)
    check_result(res, cfg, tiny_data, tmp_path / "b.safetensors")
    assert res.meta.fit["steps_done"] == 3 and len(res.losses) >= 1
    assert res.meta.teacher.sha256 and res.meta.method == method
    if method == "boost":
        assert sorted(res.tensors) == sorted(BASES + APPROX)
        assert res.meta.counts == {"m": 8, "U": 16, "V": 16, "k": 4, "views": 4}
        assert set(res.meta.fit["approx"]) == {"rot90", "rot180", "rot270"}
    else:
        assert sorted(res.tensors) == ["images", "targets"]
        assert res.meta.storage["cost"] == 8.0


def test_distillation_changes_the_set(tiny_results, tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """Three outer steps move the learnable tensors away from their initialisation."""
    init = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=0), device=CPU)
    assert init.meta.fit["steps_done"] == 0
    assert not torch.equal(init.tensors["images"], tiny_results["krr_st"].tensors["images"])
    # the reported drift is the relative change of the support set, zero without steps
    assert init.meta.fit["drift"] == {"images": 0.0, "targets": 0.0}
    done = tiny_results["krr_st"]
    x0, x1 = init.tensors["images"].double(), done.tensors["images"].double()
    expected = float((x1 - x0).norm() / x0.norm())
    assert done.meta.fit["drift"]["images"] == pytest.approx(expected, rel=1e-3, abs=1e-5)
    assert done.meta.fit["drift"]["targets"] > 0


@pytest.mark.parametrize("method", ["krr_st", "boost"])
def test_seeded(method: str, tiny_results, tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """The same seed gives identical tensors; a different seed does not."""
    again = distill(tiny_data, tiny_teacher, tiny_distill_config(method), device=CPU)
    assert equal_tensors(again.tensors, tiny_results[method].tensors)
    assert again.losses == tiny_results[method].losses
    other = distill(tiny_data, tiny_teacher, tiny_distill_config(method, seed=1), device=CPU)
    assert not equal_tensors(other.tensors, tiny_results[method].tensors)


def test_outer_loss_decreases_smoke(tiny_data, tiny_teacher, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """SMOKE TEST ONLY (style.md §2.10): with one pool model, full batches and lr 1e-2, the outer loss falls.

    The loss is recorded at every step by wrapping ``fit``; this is not a reference comparison.
    """
    orig = engine.fit
    monkeypatch.setattr(distill_mod, "fit", lambda *a, **k: orig(*a, **{**k, "log_every": 1}))
    cfg = tiny_distill_config("boost", num_steps=15, lr=1e-2, lr_final_factor=1.0, batch_size=64, pool_size=1,
                              pool_online_steps=1000, approx_steps=5)
    losses = distill(tiny_data, tiny_teacher, cfg, device=CPU).losses
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:3]) / 3, losses


@pytest.mark.parametrize("overrides, keys", [
    (dict(views=("identity",)), BASES),
    (dict(approx=False), BASES + ["view_coeffs.rot90", "view_coeffs.rot180", "view_coeffs.rot270"]),
    (dict(bases=False), ["images", "targets"] + APPROX),
    (dict(bases=False, approx=False), ["images", "targets", "view_targets.rot90", "view_targets.rot180",
                                       "view_targets.rot270"]),
])
def test_ablations(overrides, keys, tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each ablation gives a valid bundle within budget whose keys are the ones the storage plan charged."""
    cfg = tiny_distill_config("boost", num_steps=2, **overrides)
    res = distill(tiny_data, tiny_teacher, cfg, device=CPU)
    assert sorted(res.tensors) == sorted(keys)
    check_result(res, cfg, tiny_data, tmp_path / "b.safetensors")


def test_no_bases_at_a_larger_budget(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """--no-bases must not exceed the budget it planned for (it planned pixel targets, see test_ablations)."""
    cfg = tiny_distill_config("boost", budget=16, num_steps=1, bases=False)
    res = distill(tiny_data, tiny_teacher, cfg, device=CPU)
    assert res.meta.storage["cost"] <= 16


def test_aug_in_krr_false_and_other_options(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """aug_in_krr=False, random init, frozen means, a combined view and an explicit m all run and stay valid."""
    cfg = tiny_distill_config("boost", num_steps=2, aug_in_krr=False, init="random", freeze_means=True,
                              views=("identity", "hflip+rot90"), num_images=4)
    res = distill(tiny_data, tiny_teacher, cfg, device=CPU)
    assert res.meta.counts["m"] == 4
    assert "approx.hflip+rot90.0.weight" in res.tensors
    check_result(res, cfg, tiny_data, tmp_path / "b.safetensors")


def test_config_errors(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """Over-budget and mismatched configurations raise ConfigError before any work."""
    with pytest.raises(ConfigError, match="bases alone"):
        distill(tiny_data, tiny_teacher, tiny_distill_config("boost", budget=1, image_rank=100), device=CPU)
    with pytest.raises(ConfigError, match="at most"):
        distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_images=9), device=CPU)
    with pytest.raises(ConfigError, match="--views and bases apply to --method boost"):
        tiny_distill_config("krr_st", views=("identity", "rot90"))
    with pytest.raises(ConfigError, match="only 64"):
        distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", budget=100), device=CPU)
    from ssdd_cli.data import make_shapes

    other = make_shapes(num_train=16, num_test=8, image_size=8, seed=0)
    with pytest.raises(ConfigError, match="trained at 16 px"):
        distill(other, tiny_teacher, tiny_distill_config("krr_st"), device=CPU)


def test_first_loss_is_the_first_step(tiny_results, tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """meta['fit']['first_loss'] (printed by the CLI as 'outer loss FIRST → FINAL') is the loss of step 1.

    The loss of step 1 does not depend on the number of steps (it is computed before any update).
    """
    one = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", num_steps=1), device=CPU)
    assert len(one.losses) == 1
    assert tiny_results["boost"].meta.fit["first_loss"] == pytest.approx(one.losses[0], rel=1e-6)


@pytest.mark.parametrize("method", ["krr_st", "boost"])
def test_same_result_as_before_the_redesign(method: str, tiny_data) -> None:  # type: ignore[no-untyped-def]
    """Today's code distils the same set as ssdd 0.1.0 did before the redesign (to float noise across CPUs).

    tests/data/v1_<method>.safetensors were written by the old code from this config and v1_teacher.safetensors.
    """
    from ssdd_cli.teacher import load_teacher

    data_dir = Path(__file__).parent / "data"
    teacher = load_teacher(data_dir / "v1_teacher.safetensors", CPU)
    res = distill(tiny_data, teacher, tiny_distill_config(method), device=CPU)
    old = load_bundle(data_dir / f"v1_{method}.safetensors")
    assert sorted(res.tensors) == sorted(old.tensors)
    for key, value in old.tensors.items():
        torch.testing.assert_close(res.tensors[key], value, rtol=1e-3, atol=1e-2, msg=key)
    assert res.meta.fit["first_loss"] == pytest.approx(old.meta.fit["first_loss"], rel=1e-4)
    assert res.meta.fit["final_loss"] == pytest.approx(old.meta.fit["final_loss"], rel=1e-3)


def test_targets_of_decoded(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """targets_of=decoded: every initial pair is the teacher's own output on the decoded (viewed) image."""
    from ssdd_cli import augment

    kw = dict(num_steps=0, approx=False, image_rank=8, repr_rank=32, num_images=6, budget=40)
    sets = {t: distill(tiny_data, tiny_teacher, tiny_distill_config("boost", targets_of=t, **kw), device=CPU)
            for t in ("real", "decoded")}
    with torch.no_grad():
        for t, res in sets.items():
            xs, ys = res.synthetic.support()
            own = tiny_teacher.represent(augment.denormalize(xs, tiny_data.mean, tiny_data.std))
            gap = float((ys - own).norm() / own.norm())
            # full representation rank (V = D): the decoded targets are exact; the real ones are not
            assert gap < 1e-4 if t == "decoded" else gap > 1e-2, (t, gap)
        torch.testing.assert_close(sets["real"].synthetic.support()[0], sets["decoded"].synthetic.support()[0])
    for method, extra in (("krr_st", {}), ("boost", {"bases": False})):
        with pytest.raises(ConfigError, match="targets_of=decoded .* needs bases"):
            tiny_distill_config(method, targets_of="decoded", **extra)


def test_kmeans_subset_covers_every_cluster() -> None:
    """select=kmeans: one distinct image per well-separated cluster (random draws miss some), deterministic."""
    from ssdd_cli.methods.init import kmeans_subset

    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 16, generator=gen) * 100
    sizes = torch.tensor([200, 100, 50, 20, 10, 5, 3, 2])  # unbalanced: random sampling favours the big ones
    x = torch.cat([c + torch.randn(int(k), 16, generator=gen) for c, k in zip(centres, sizes)])
    label = torch.repeat_interleave(torch.arange(8), sizes)
    found = []
    for seed in range(3):
        chosen = kmeans_subset(x, 8, torch.Generator().manual_seed(seed), iters=30)
        assert len(set(chosen.tolist())) == 8
        found.append(len(set(label[chosen].tolist())))
    assert min(found) == 8  # k-means++ seeding finds even the clusters of 2 and 3 points
    again = kmeans_subset(x, 8, torch.Generator().manual_seed(0), iters=30)
    assert torch.equal(again, kmeans_subset(x, 8, torch.Generator().manual_seed(0), iters=30))
    assert torch.equal(kmeans_subset(x, 390, gen).sort().values, torch.arange(390))  # count = n: every image once


@pytest.mark.parametrize("method", ["krr_st", "boost"])
def test_select_kmeans_runs(method: str, tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """Both methods start from the coreset when asked (other images than the random draw); random refuses it."""
    from ssdd_cli import api

    sets = {sel: distill(tiny_data, tiny_teacher, tiny_distill_config(method, num_steps=0, select=sel), device=CPU)
            for sel in ("uniform", "kmeans")}
    with torch.no_grad():
        first = {sel: res.synthetic.support()[0] for sel, res in sets.items()}
    assert first["uniform"].shape == first["kmeans"].shape and not torch.allclose(first["uniform"], first["kmeans"])
    if method == "krr_st":  # pixels: the coreset's images themselves, in the order of the centres
        from ssdd_cli import augment
        from ssdd_cli.methods.init import kmeans_subset
        from ssdd_cli.rng import stream

        reprs = api.teacher_representations(tiny_teacher, tiny_data)
        idx = kmeans_subset(reprs, first["kmeans"].shape[0], stream(0, "init", "cpu"))
        want = augment.normalize(augment.to_float(tiny_data.train_images[idx]), tiny_data.mean, tiny_data.std)
        torch.testing.assert_close(first["kmeans"], want)
    with pytest.raises(ConfigError, match="select applies to krr-st and boost"):
        tiny_distill_config("random", select="kmeans")


def test_orthonormalise_every(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """orthonormalise_every=K: the bases leave the loop orthonormal; without it the outer steps bend them."""
    kw = dict(num_steps=4, lr=3e-2, approx=False)
    sets = {k: distill(tiny_data, tiny_teacher, tiny_distill_config("boost", orthonormalise_every=k, **kw), device=CPU)
            for k in (0, 2)}
    for k, res in sets.items():
        for name in ("image_basis", "repr_basis"):
            b = res.tensors[name].double()
            off = float((b @ b.T - torch.eye(b.shape[0], dtype=torch.float64)).abs().max())
            assert off < 1e-5 if k else off > 1e-3, (k, name, off)
    assert sets[2].meta.fit["steps_done"] == 4
    for method, extra in (("krr_st", {}), ("boost", {"bases": False})):
        with pytest.raises(ConfigError, match="orthonormalise_every .* needs bases"):
            tiny_distill_config(method, orthonormalise_every=2, **extra)
    with pytest.raises(ConfigError, match="orthonormalise_every must be ≥ 0"):
        tiny_distill_config("boost", orthonormalise_every=-1)


def test_image_fit_steps(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """image_fit_steps: the images move so that the teacher maps them closer to their (unchanged) targets."""
    from ssdd_cli import augment

    kw = dict(num_steps=0, approx=False, lr=1e-2)
    sets = {k: distill(tiny_data, tiny_teacher, tiny_distill_config("boost", image_fit_steps=k, **kw), device=CPU)
            for k in (0, 30)}
    gaps = {}
    with torch.no_grad():
        for k, res in sets.items():
            xs, ys = res.synthetic.support()
            own = tiny_teacher.represent(augment.denormalize(xs, tiny_data.mean, tiny_data.std))
            gaps[k] = float((own - ys).norm() / ys.norm())
        torch.testing.assert_close(sets[30].synthetic.support()[1], sets[0].synthetic.support()[1])
        assert not torch.allclose(sets[30].synthetic.support()[0], sets[0].synthetic.support()[0])
    init = sets[30].meta.fit["init"]
    assert gaps[30] < 0.8 * gaps[0], gaps
    assert init["image_fit_error_before"] == pytest.approx(gaps[0], rel=1e-3)
    assert init["image_fit_error_after"] == pytest.approx(gaps[30], rel=1e-3)
    assert sets[30].meta.storage == sets[0].meta.storage
    for method, extra in (("krr_st", {}), ("boost", {"bases": False})):
        with pytest.raises(ConfigError, match="image_fit_steps .* needs bases"):
            tiny_distill_config(method, image_fit_steps=5, **extra)


def test_image_fit_targets_stored_aims_at_what_the_set_delivers(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """image_fit_targets=stored: the networks are fitted first and the fit's error is that of the delivered pairs.

    With ``exact`` the fit aims at the real images' view targets, which the networks fitted afterwards
    replace: the delivered pairs are then not those the fit measured.
    """
    from ssdd_cli import augment

    kw = dict(num_steps=0, lr=1e-2, image_fit_steps=30, approx_steps=50)
    gaps, sets = {}, {}
    for mode in ("exact", "stored"):
        sets[mode] = res = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", image_fit_targets=mode, **kw),
                                   device=CPU)
        with torch.no_grad():
            xs, ys = res.synthetic.support()
            own = tiny_teacher.represent(augment.denormalize(xs, tiny_data.mean, tiny_data.std))
            gaps[mode] = float((own - ys).norm() / ys.norm())
        assert set(res.meta.fit["approx"]) == set(res.synthetic.views[1:])  # reported either way
        assert len(res.synthetic.approx) == len(res.synthetic.views) - 1
    assert sets["stored"].meta.fit["init"]["image_fit_error_after"] == pytest.approx(gaps["stored"], rel=1e-3)
    assert sets["exact"].meta.fit["init"]["image_fit_error_after"] != pytest.approx(gaps["exact"], rel=1e-2)
    assert sets["stored"].meta.storage == sets["exact"].meta.storage
    # Frozen means stay frozen through the networks' rebuild; with outer steps the networks' fit is an initial one.
    frozen = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", image_fit_targets="stored", freeze_means=True,
                                                                  **kw), device=CPU)
    pca = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", **{**kw, "image_fit_steps": 0}), device=CPU)
    torch.testing.assert_close(frozen.synthetic.image_mean, pca.synthetic.image_mean)
    assert not torch.allclose(sets["stored"].synthetic.image_mean, pca.synthetic.image_mean)  # unfrozen, it moves
    stepped = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", image_fit_targets="stored",
                                                                   **{**kw, "num_steps": 2}), device=CPU)
    assert stepped.meta.fit["approx"] == {}
    assert {f"approx_init_{v}" for v in stepped.synthetic.views[1:]} <= set(stepped.meta.fit["init"])
    with pytest.raises(ConfigError, match="image_fit_targets must be exact or stored"):
        tiny_distill_config("boost", image_fit_targets="approx")
