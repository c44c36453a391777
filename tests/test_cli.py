"""The ``ssdd`` command line via CliRunner: help, the full tiny pipeline, and one-line errors per error class."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from clihelp import fails, invoke, ok
from safetensors.torch import load_file

from ssdd_cli.bundle import load_bundle
from ssdd_cli.cli import app
from ssdd_cli.expand import expand_pairs

TINY_TEACHER = ["--preset", "cpu", "--arch", "convnet2_xs", "--steps", "2", "--batch-size", "16", "--no-probe",
                "--image-size", "16", "--device", "cpu"]
# The cpu preset serves the identity view only; the bundle tests cover the rotated views and their networks.
PAPER_VIEWS = ["--set", "views=identity,rot90,rot180,rot270", "--set", "approx=true"]
TINY_DISTILL = ["--preset", "cpu", "--steps", "2", "--budget", "10", "--set", "pool_arch=convnet2_xs", "--set", "pool_size=2",
                "--set", "pool_online_steps=2", "--batch-size", "16", "--image-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``t.safetensors`` (teacher) and ``b.safetensors`` (boost bundle, N=10) made by the CLI."""
    work = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    mp.setenv("SSDD_CACHE", str(work / "cache"))
    try:
        res = invoke("teacher", "shapes", *TINY_TEACHER, "-o", "t.safetensors")
        ok(res)
        assert res.stdout.strip() == "t.safetensors"
        res = invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "--set", "image_fit_steps=5",
                     *PAPER_VIEWS, "-o", "b.safetensors")
        ok(res)
        assert "wrote b.safetensors" in res.stdout and "support moved" in " ".join(res.stdout.split())
        assert "storage" in res.stderr  # the planned storage table goes to stderr
    finally:
        mp.undo()
    return work


@pytest.fixture
def in_pipeline(pipeline: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(pipeline)
    return pipeline


def test_help() -> None:
    """``ssdd --help``, ``--version`` and every subcommand's ``--help`` exit 0."""
    res = invoke("--help")
    ok(res)
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert {"teacher", "distill", "inspect", "expand", "evaluate", "models"} <= {c.replace("_cmd", "") for c in commands}
    for name in ("teacher", "distill", "inspect", "expand", "evaluate", "models"):
        assert name in res.stdout
        sub = invoke(name, "--help")
        ok(sub)
        assert "Usage" in sub.stdout
    ok(invoke("--version"))
    models = invoke("models")
    ok(models)
    assert "convnet2_xs" in models.stdout and "resnet18" in models.stdout


def test_pipeline_outputs(in_pipeline: Path) -> None:
    """The teacher and bundle the CLI wrote are valid, within budget, and remember the teacher."""
    b = load_bundle("b.safetensors")
    assert b.method == "boost" and b.meta.source == "shapes" and b.image_shape == (3, 16, 16)
    assert b.storage().cost <= 10
    assert b.meta.teacher.arch == "convnet2_xs" and b.meta.teacher.sha256
    assert b.meta.config["num_steps"] == 2 and b.meta.config["pool_arch"] == "convnet2_xs"


def test_inspect(in_pipeline: Path) -> None:
    """inspect: table on stdout, --json parses with the storage cost ≤ budget, --verify passes every check."""
    res = invoke("inspect", "b.safetensors")
    ok(res)
    assert "boost" in res.stdout and "identity, rot90, rot180, rot270" in res.stdout
    res = invoke("inspect", "b.safetensors", "--json")
    ok(res)
    summary = json.loads(res.stdout)
    assert summary["method"] == "boost" and summary["budget"] == 10
    assert 0 < summary["storage"]["cost"] <= 10
    assert summary["num_pairs"] == 4 * summary["num_images"]
    assert summary["storage"]["total_floats"] == sum(
        torch.Size(t["shape"]).numel() for t in summary["tensors"].values())
    res = invoke("inspect", "b.safetensors", "--verify")
    ok(res)
    assert res.stdout.count("✓") == 5 and "✗" not in res.stdout and "checksum" in res.stdout


def test_expand(in_pipeline: Path, tmp_path: Path) -> None:
    """expand: m×4 PNGs + 4 grids + manifest + pairs.safetensors, and the pairs equal expand_pairs()."""
    bundle = load_bundle("b.safetensors")
    m = bundle.num_images
    out = tmp_path / "out"
    ok(invoke("expand", "b.safetensors", "-o", str(out), "--device", "cpu"))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) == m * 4 + 4 + 2
    assert len([f for f in files if f.startswith("images/") and f.endswith(".png")]) == m * 4
    assert sorted(f for f in files if f.startswith("grid_")) == [
        "grid_identity.png", "grid_rot180.png", "grid_rot270.png", "grid_rot90.png"]
    assert "manifest.json" in files and "pairs.safetensors" in files
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_pairs"] == 4 * m and len(manifest["files"]) == 4 * m
    pairs = load_file(str(out / "pairs.safetensors"))
    images, targets = expand_pairs(bundle)
    assert torch.equal(pairs["images"], images) and torch.equal(pairs["targets"], targets)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left

    one = tmp_path / "one"
    ok(invoke("expand", "b.safetensors", "-o", str(one), "--views", "identity", "--device", "cpu"))
    assert len(list((one / "images").glob("*.png"))) == m
    assert [p.name for p in one.glob("grid_*.png")] == ["grid_identity.png"]


def test_evaluate(in_pipeline: Path, tmp_path: Path) -> None:
    """Evaluate with the random baseline writes a JSON report with the bundle, random, floor and teacher rows."""
    report = tmp_path / "r.json"
    res = invoke("evaluate", "b.safetensors", "--arch", "convnet2_xs", "--epochs", "1", "--probe-steps", "5",
                 "--baseline", "random", "--json", str(report), "--device", "cpu")
    ok(res)
    data = json.loads(report.read_text())
    names = [r["name"] for r in data["rows"]]
    assert names[0] == "boost (N=10)" and names[1] == "random (N=10)" and "no pretraining (floor)" in names
    assert any(n.startswith("teacher") for n in names)
    assert data["config"]["archs"] == ["convnet2_xs"] and data["config"]["pretrain_epochs"] == 1
    assert "vs random" in res.stdout and "linear on shapes" in res.stdout


def test_evaluate_report_folder(in_pipeline: Path, tmp_path: Path) -> None:
    """Two bundles, two architectures, two protocols, full and random baselines: report.md/json and readable PNGs.

    The folder is replaced only with --overwrite, and a folder ssdd did not write never is.
    """
    from PIL import Image

    other = tmp_path / "c.safetensors"
    shutil.copy("b.safetensors", other)
    out = tmp_path / "rep"
    args = ["evaluate", "b.safetensors", str(other), "--arch", "convnet2_xs", "--arch", "convnet3_s", "--epochs", "1",
            "--probe-steps", "5", "--protocol", "linear", "--protocol", "knn", "--set", "knn_k=3", "--set", "full_epochs=1",
            "--set", "max_train_images=200", "--set", "max_test_images=100",
            "--baseline", "random", "--baseline", "full", "--report", str(out), "--device", "cpu"]
    ok(invoke(*args))
    data = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in data["rows"]][:4] == ["boost (N=10) b.safetensors", "boost (N=10) c.safetensors",
                                                   "random (N=10)", f"full source ({data['rows'][3]['name'][13:]}"]
    assert len(data["tables"]) == 4 and data["reference"] == "random (N=10)"
    # the same bundle twice: the same pairs, the same seeds, so the same accuracies
    for table in data["tables"]:
        assert table["rows"][0]["accuracies"] == table["rows"][1]["accuracies"]
    md = (out / "report.md").read_text()
    assert "## shapes, knn" in md and "| convnet2_xs | convnet3_s |" in md
    # max_test_images=100: every accuracy is a whole percentage
    assert all(a == round(a) for t in data["tables"] for r in t["rows"] for a in r["accuracies"])
    for name in ("accuracy.png", "images_1.png", "images_2.png", "loss.png"):
        assert f"]({name})" in md
        with Image.open(out / name) as im:
            assert im.size[0] >= 60 and im.size[1] >= 60
    fails(invoke(*args), 7, "already exists")
    # a random bundle beside the random baseline of the same N: two rows, told apart
    rnd = tmp_path / "rnd.safetensors"
    ok(invoke("distill", "shapes", "--method", "random", "--teacher", "t.safetensors", *TINY_DISTILL, "-o", str(rnd)))
    ok(invoke("evaluate", str(rnd), "--arch", "convnet2_xs", "--epochs", "1", "--probe-steps", "5", "--baseline", "random",
              "--set", "max_train_images=200", "--set", "max_test_images=100", "--json", str(tmp_path / "r.json"),
              "--device", "cpu"))
    names = [r["name"] for r in json.loads((tmp_path / "r.json").read_text())["rows"]]
    assert names[:2] == ["random (N=10)", "random (N=10) #2"]
    ok(invoke(*args, "--overwrite"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    fails(invoke(*args[:-4], "--report", str(mine), "--overwrite"), 7, "not written by")
    assert (mine / "notes.txt").read_text() == "keep"


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_dataset(in_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    fails(invoke("distill", "no-such-set", "--teacher", "t.safetensors", "-o", str(out)), 3, "unknown dataset")
    assert not out.exists()


def test_missing_teacher(in_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    fails(invoke("distill", "shapes", "--teacher", str(tmp_path / "nope.safetensors"), *TINY_DISTILL, "-o", str(out)),
          4, "no such file")
    assert not out.exists()


def test_no_cached_teacher_says_which_command(in_pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSDD_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "x.safetensors"
    fails(invoke("distill", "shapes", *TINY_DISTILL, "-o", str(out)), 2, "ssdd teacher shapes")
    assert not out.exists()


def test_inspect_garbage(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x13\x37 this is not a bundle")
    fails(invoke("inspect", str(junk)), 4, "not a readable safetensors")
    fails(invoke("inspect", str(tmp_path / "missing.safetensors")), 4, "no such file")


def test_inspect_teacher_file(in_pipeline: Path) -> None:
    fails(invoke("inspect", "t.safetensors"), 4, "teacher file")


def test_budget_zero(in_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    fails(invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "--budget", "0", "-o", str(out)),
          2, "--budget must be a positive")
    assert not out.exists()


def test_evaluate_unknown_arch(in_pipeline: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    fails(invoke("evaluate", "b.safetensors", "--arch", "convnet99", "--epochs", "1", "--probe-steps", "5",
                 "--json", str(report), "--device", "cpu"), 2, "unknown architecture 'convnet99'")
    assert not report.exists()


def test_existing_output_is_kept(in_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"keep me")
    fails(invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "-o", str(out)), 7, "--overwrite")
    assert out.read_bytes() == b"keep me"
    fails(invoke("teacher", "shapes", *TINY_TEACHER, "-o", str(out)), 7, "already exists")
    assert out.read_bytes() == b"keep me"
    folder = tmp_path / "expanded"
    folder.mkdir()
    (folder / "mine.txt").write_text("x")
    fails(invoke("expand", "b.safetensors", "-o", str(folder)), 7, "already exists")
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_output_under_a_file(in_pipeline: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = blocker / "sub" / "x.safetensors"
    fails(invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "-o", str(out)), 7, "is a file")
    assert blocker.read_text() == "x"
    fails(invoke("expand", "b.safetensors", "-o", str(blocker / "dir")), 7, "is a file")


def test_unwritable_output_fails_before_work(in_pipeline: Path, tmp_path: Path) -> None:
    # Root ignores permission bits, so a read-only folder is not a portable test; /proc refuses new
    # files to everyone on Linux, and a folder with no write bit stops other users.
    if os.geteuid() == 0:
        if not Path("/proc/self").is_dir():
            pytest.skip("needs /proc when running as root")
        target = Path("/proc") / "ssdd-test" / "x.safetensors"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "x.safetensors"
    out = fails(invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "-o", str(target)), 7,
                "cannot write")
    assert "writable location" in out
    assert not target.exists()


def test_unknown_view(in_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    fails(invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "--views", "identity,rot45",
                 "-o", str(out)), 2, "unknown view 'rot45'")
    assert not out.exists()
    fails(invoke("expand", "b.safetensors", "-o", str(tmp_path / "e"), "--views", "hflip"), 2, "not in this bundle")
    assert not (tmp_path / "e").exists()


def test_budget_too_small_for_bases(in_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    fails(invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "--budget", "1",
                 "--image-rank", "100", "-o", str(out)), 2, "bases alone")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_debug_shows_traceback(in_pipeline: Path, tmp_path: Path) -> None:
    """--debug re-raises the SsddError (for developers)."""
    from ssdd_cli.errors import ConfigError

    res = invoke("distill", "shapes", "--teacher", "t.safetensors", *TINY_DISTILL, "--budget", "0", "--debug",
                 "-o", str(tmp_path / "x.safetensors"))
    assert isinstance(res.exception, ConfigError)


def test_evaluate_elsewhere_without_the_teacher_file(in_pipeline: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle evaluated where its (relative) teacher path does not resolve still evaluates without a baseline.

    The teacher is only needed for --baseline random (and the teacher's own probe row, which is then skipped).
    """
    import shutil

    shutil.copy(in_pipeline / "b.safetensors", tmp_path / "b.safetensors")
    monkeypatch.chdir(tmp_path)
    teacher_path = Path(load_bundle("b.safetensors").meta.teacher.path)
    assert teacher_path.is_absolute()
    hidden = teacher_path.with_name("moved-away.safetensors")
    teacher_path.rename(hidden)
    try:
        report = tmp_path / "r.json"
        res = invoke("evaluate", "b.safetensors", "--arch", "convnet2_xs", "--epochs", "1", "--probe-steps", "5",
                     "--seeds", "1", "--json", str(report), "--device", "cpu")
        baseline = invoke("evaluate", "b.safetensors", "--arch", "convnet2_xs", "--baseline", "random",
                          "--device", "cpu")
    finally:
        hidden.rename(teacher_path)
    ok(res)
    names = [r["name"] for r in json.loads(report.read_text())["rows"]]
    assert names == ["boost (N=10)", "no pretraining (floor)"]
    fails(baseline, 2, "needs the teacher")


def test_default_teacher_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ssdd teacher DATASET` without -o stores the teacher in the cache, where `ssdd distill DATASET` finds it."""
    monkeypatch.chdir(tmp_path)
    res = invoke("teacher", "shapes", *TINY_TEACHER)
    ok(res)
    cached = Path(res.stdout.strip())
    assert cached.exists() and cached.name == "shapes-16px.safetensors"
    assert str(cached).startswith(os.environ["SSDD_CACHE"])
    ok(invoke("distill", "shapes", *TINY_DISTILL, "--method", "krr-st", "--budget", "4", "-o", "k.safetensors"))
    b = load_bundle("k.safetensors")
    assert b.method == "krr_st" and b.num_images == 4 and b.meta.teacher.path == str(cached)
