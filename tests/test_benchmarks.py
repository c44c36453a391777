"""The quality benchmark's bookkeeping: which rows it compares, and which earlier rows it may reuse."""

from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("quality", Path(__file__).parents[1] / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def record(**params) -> dict:  # type: ignore[no-untyped-def]
    base = {"dataset": "cifar100", "epochs": 1000, "probe_steps": 5000, "arch": "convnet3_s", "krr_steps": 1000,
            "boost_steps": None, "boost_set": [], "krr_set": [], "teacher_cache": 0, "precision": "auto"}
    return {"teacher": {"sha256": "t" * 64}, "params": {**base, **params}, "data_fingerprint": "d" * 64}


KRR_NAMED = ["lr=1e-2", "pool_arch=convnet3_m"]  # what a KRR-ST row of a record without settings must name


def run(method: str, seed: int = 0, budget: int = 100, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"method": method, "seed": seed, "budget": budget, "row": method, **extra}


def test_run_key_depends_only_on_what_decides_the_row() -> None:
    a = record(krr_set=KRR_NAMED)
    b = record(boost_steps=500, krr_set=["lr=0.03", "pool_arch=convnet3_m"], seeds=7, out="x.json")
    assert quality.run_key(a, run("random")) == quality.run_key(b, run("random"))  # neither setting touches Random
    assert quality.run_key(a, run("boost")) != quality.run_key(b, run("boost"))
    assert quality.run_key(a, run("krr_st")) != quality.run_key(b, run("krr_st"))
    assert quality.run_key(a, run("boost")) != quality.run_key(a, run("boost", seed=1))
    assert quality.run_key(a, run("boost")) != quality.run_key(a, run("boost", budget=25))
    assert quality.run_key(a, run("boost")) != quality.run_key(a, run("boost", set={"views": "identity,rot90"}))
    assert quality.run_key(a, run("boost", set={"approx": "true"})) == \
        quality.run_key(record(boost_set=["approx=true"]), run("boost"))  # a row's override or the record's: one row
    other_teacher = {**a, "teacher": {"sha256": "u" * 64}}
    assert quality.run_key(a, run("random")) != quality.run_key(other_teacher, run("random"))
    # A record written before a parameter existed was measured with its default.
    old = record()
    del old["params"]["precision"], old["params"]["boost_set"]
    assert quality.run_key(old, run("boost")) == quality.run_key(a, run("boost"))


def test_run_key_compares_resolved_settings_not_the_preset_name() -> None:
    """A row is keyed by what it ran with: an override equal to today's preset value is today's preset."""
    boost = quality.distill_config("boost", "cpu", 32, budget=100)
    legacy_preset = record()
    legacy_fit = record(boost_set=[f"image_fit_steps={boost.image_fit_steps}", "views=identity", "approx=false"])
    today = {**record(), "image_size": 32}
    planned = run("boost", settings=json.loads(json.dumps(asdict(boost), default=str)))
    assert boost.image_fit_steps > 0 and boost.views == ("identity",)  # the preset fits the image coding
    assert quality.run_key(legacy_fit, run("boost")) == quality.run_key(today, run("boost"))
    assert quality.run_key(legacy_fit, run("boost")) == quality.run_key(today, planned)
    assert quality.run_key(legacy_preset, run("boost")) != quality.run_key(today, planned)  # an earlier preset
    stored = {**{k: v for k, v in planned["settings"].items() if k != "image_fit_steps"},  # a setting added later
              "views": ["identity", "rot90", "rot180", "rot270"], "approx": True}
    assert quality.run_key(today, run("boost", settings={**stored, "seed": 9})) == \
        quality.run_key(legacy_preset, run("boost"))  # missing settings take their default; the seed is the run's


def test_run_key_keeps_what_the_image_fit_aims_at_only_where_networks_serve_views() -> None:
    today = {**record(), "image_size": 32}
    preset = json.loads(json.dumps(asdict(quality.distill_config("boost", "cpu", 32, budget=100)), default=str))

    def key(**settings: object) -> str:
        full = {"views": ["identity", "rot90", "rot180", "rot270"], "approx": True, "image_fit_steps": 300}
        return quality.run_key(today, run("boost", settings={**preset, **full, **settings}))

    assert key(image_fit_targets="exact") != key(image_fit_targets="stored")
    for same in ({"approx": False}, {"views": ["identity"]}, {"image_fit_steps": 0}):
        assert key(image_fit_targets="exact", **same) == key(image_fit_targets="stored", **same), same
    legacy_fit = record(boost_set=["image_fit_steps=300"])  # the rotations, a fit at the exact targets
    assert quality.run_key(legacy_fit, run("boost")) == key(image_fit_targets="exact")


def test_reuse_skips_rows_whose_settings_no_longer_exist(tmp_path: Path) -> None:
    rec = {**record(krr_set=["no_such_setting=1", *KRR_NAMED]),
           "runs": [run("krr_st", accuracy=41.0), run("random", accuracy=40.0)]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rec))
    found = quality.reusable_runs([str(path)], "d" * 64)
    assert [r["method"] for r in found.values()] == ["random"]


def test_reuse_skips_krr_rows_of_records_that_predate_settings_unless_they_name_lr_and_pool(tmp_path: Path) -> None:
    """KRR-ST's preset changed twice before records stored settings: such a row cannot pass for today's."""
    path = tmp_path / "r.json"
    for krr_set, kept in (([], False), (["lr=1e-2"], False), (KRR_NAMED, True)):
        path.write_text(json.dumps({**record(krr_set=krr_set), "runs": [run("krr_st", accuracy=41.0)]}))
        assert bool(quality.reusable_runs([str(path)], "d" * 64)) == kept, krr_set
    today = {**record(), "image_size": 32, "runs": [run("krr_st", accuracy=41.0)]}  # a record that stores settings
    path.write_text(json.dumps(today))
    assert len(quality.reusable_runs([str(path)], "d" * 64)) == 1


def test_reuse_skips_records_of_other_training_images(tmp_path: Path) -> None:
    rec = {**record(), "runs": [run("random", accuracy=40.0), run("boost", accuracy=43.0)]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rec))
    found = quality.reusable_runs([str(path)], "d" * 64)
    assert found[quality.run_key(rec, run("boost"))]["accuracy"] == 43.0
    assert found[quality.run_key(rec, run("boost"))]["reused_from"] == str(path)
    assert quality.reusable_runs([str(path)], "e" * 64) == {}
    path.write_text(json.dumps({**rec, "floor": 19.27}))  # the floor is reused like a row
    found = quality.reusable_runs([str(path)], "d" * 64)
    assert found[quality.run_key(rec, {"method": "floor", "seed": 0, "budget": 0})]["accuracy"] == 19.27
    legacy = {k: v for k, v in rec.items() if k != "data_fingerprint"}  # matched by dataset name
    path.write_text(json.dumps(legacy))
    assert len(quality.reusable_runs([str(path)], "e" * 64)) == 2
    path.write_text("not json")
    with pytest.raises(SystemExit, match="cannot read"):
        quality.reusable_runs([str(path)], "d" * 64)


def test_budget_table_compares_boost_at_the_smallest_budget_with_random_at_the_next() -> None:
    args = argparse.Namespace(ablation=False, budgets="25,100", methods="random,krr_st,boost", budget=100)
    rows = quality.plan_rows(args)
    assert [r["row"] for r in rows] == ["random@25", "krr_st@25", "boost@25", "random@100", "krr_st@100", "boost@100"]
    pairs = quality.pairs_of(rows)
    assert ("boost@25", "random@100") in pairs
    assert ("boost@100", "random@100") in pairs and ("krr_st@25", "random@25") in pairs


def test_ablation_rows_follow_the_paper_order() -> None:
    args = argparse.Namespace(ablation=True, budget=100)
    rows = quality.plan_rows(args)
    assert [r["row"] for r in rows] == ["krr_st", "+bases", "+views+approx"]
    assert quality.pairs_of(rows) == [("+bases", "krr_st"), ("+views+approx", "+bases"), ("+views+approx", "krr_st")]


def test_markdown_table_lists_every_seed_and_the_paired_differences() -> None:
    rec = {**record(), "floor": 19.27, "teacher_probe": 41.2,
           "runs": [run("random", seed=0, accuracy=39.5), run("boost", seed=0, accuracy=43.25),
                    run("random", seed=1, accuracy=40.0), run("boost", seed=1, accuracy=39.75)],
           "summary": [{"row": "random", "method": "random", "mean": 39.75, "std": 0.35},
                       {"row": "boost", "method": "boost", "mean": 41.5, "std": 2.47}],
           "paired": {"boost-random": {"mean": 1.75, "std": 3.0, "per_seed": [3.75, -0.25]}},
           "arch": "convnet3_s", "dataset": "cifar100"}
    md = quality.markdown(rec)
    assert "| no pretraining (floor) | 19.27 | |" in md and "| teacher's own features | 41.20 | |" in md
    assert "| boost | 41.50 ± 2.47 | 43.25, 39.75 |" in md
    assert "| boost − random | +1.75 ± 3.00 (1/2 seeds > 0) | +3.75, -0.25 |" in md


def test_plot_draws_budget_curves_and_bars(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    base = {**record(), "floor": 19.0, "teacher_probe": 41.0, "arch": "convnet3_s", "dataset": "cifar100", "budget": 100,
            "runs": [run("random", accuracy=40.0)]}
    curves = {**base, "summary": [{"row": f"{m}@{n}", "method": m, "budget": n, "mean": 40.0 + n / 100, "std": 0.5}
                                  for m in ("random", "boost") for n in (25, 100)]}
    bars = {**base, "summary": [{"method": "random", "mean": 39.0, "std": 0.5}]}  # an older record: no budget per row
    for name, rec in (("curves.png", curves), ("bars.png", bars)):
        quality.plot(rec, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_coding_benchmark_runs_and_more_rank_codes_better(tmp_path: Path) -> None:
    """benchmarks/coding.py end to end on shapes: a row per configuration that fits, PCA error falling with rank."""
    import subprocess
    import sys

    from ssdd_cli import api
    from ssdd_cli.models import create_model
    from ssdd_cli.teacher import Teacher, save_teacher

    data = api.load_dataset("shapes")
    teacher = Teacher(create_model("convnet2_xs", image_size=data.image_size, seed=0), arch="convnet2_xs",
                      image_size=data.image_size, mean=data.mean, std=data.std, meta={"dataset": data.name})
    save_teacher(teacher, tmp_path / "t.safetensors")
    out = tmp_path / "coding.json"
    script = Path(__file__).parents[1] / "benchmarks" / "coding.py"
    done = subprocess.run([sys.executable, str(script), "--dataset", "shapes", "--teacher", str(tmp_path / "t.safetensors"),
                           "--budget", "100", "--repr-rank", "16", "--fit", "400", "--coded", "50", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows and "| basis side |" in done.stdout
    by_side: dict[int, list] = {}
    for r in rows:
        assert 0 < r["pixel_err"] < 1 and -1 <= r["teacher_cos"] <= 1 and r["m"] >= 1
        by_side.setdefault(r["side"], []).append((r["image_rank"], r["pixel_err"]))
    for side, pairs in by_side.items():
        errs = [e for _, e in sorted(pairs)]
        assert errs == sorted(errs, reverse=True), (side, pairs)  # a larger rank never codes worse


def test_pair_error_is_the_teachers_relative_error_on_the_pairs(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    from ssdd_cli import augment

    xs = augment.normalize(augment.to_float(tiny_data.train_images[:40]), tiny_data.mean, tiny_data.std)
    with torch.no_grad():
        own = tiny_teacher.represent_normalized(xs).double()
    assert quality.pair_error(tiny_teacher, xs, own.float()) == 0.0
    ys = own + 0.5 * torch.randn(own.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = float((own - ys).norm() / ys.norm())
    assert quality.pair_error(tiny_teacher, xs, ys.float()) == pytest.approx(want, abs=1e-4)
