"""The bad-input catalogue: one ``error:`` line, its exit code, no traceback, nothing left or changed.

Every hostile or mistaken input is checked the same way. Each case runs in its own copy of a prepared folder (a teacher, bundles, an expanded folder, a user's
notes, corrupted files); the folder is fingerprinted before and after the command.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from clihelp import fails, invoke
from safetensors import safe_open
from safetensors.torch import save_file

TINY = ["--preset", "cpu", "--image-size", "16", "--device", "cpu", "--set", "pool_arch=convnet2_xs",
        "--set", "pool_size=2", "--set", "pool_online_steps=2", "--batch-size", "16", "--steps", "2"]
D = ["distill", "shapes", "--teacher", "t.safetensors", *TINY]  # a valid distill command, without -o


def _rewrite(src: Path, dst: Path, *, meta: dict[str, str] | None = None, tensors=None) -> None:  # type: ignore[no-untyped-def]
    """Copy a bundle with changed metadata or tensors, keeping its checksum consistent (so the change is what fails)."""
    from ssdd_cli.bundle import tensor_checksum

    with safe_open(str(src), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
        m = dict(f.metadata())
    if tensors is not None:
        tensors(t)
    m["checksum"] = tensor_checksum(t)
    m.update(meta or {})
    save_file(t, str(dst), metadata=m)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tiny_data, tiny_teacher_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The prepared folder every case starts from (a copy of it)."""
    from conftest import tiny_distill_config

    from ssdd_cli import api
    from ssdd_cli.teacher import load_teacher

    root = tmp_path_factory.mktemp("catalogue")
    shutil.copy(tiny_teacher_path, root / "t.safetensors")
    teacher = load_teacher(root / "t.safetensors", torch.device("cpu"))
    boost = api.distill(tiny_data, teacher, tiny_distill_config("boost", budget=10, num_steps=1), device=torch.device("cpu"))
    api.save_distilled(boost, root / "b.safetensors")
    krr = api.distill(tiny_data, teacher, tiny_distill_config("krr_st", budget=4, num_steps=1), device=torch.device("cpu"))
    api.save_distilled(krr, root / "k.safetensors")
    api.expand_bundle(root / "b.safetensors", root / "exp", device="cpu")
    (root / "notes.txt").write_text("my notes\n")
    (root / "mydir").mkdir()
    (root / "mydir" / "keep.txt").write_text("keep\n")
    (root / "sb").mkdir()
    shutil.copy(root / "b.safetensors", root / "sb" / "set.safetensors")
    (root / "sb" / "notes.txt").write_text("notes beside the bundle\n")
    shutil.copytree(root / "exp", root / "exp_plus")
    (root / "exp_plus" / "mine.txt").write_text("added by the user\n")
    from PIL import Image

    for tree, files in {"notest": ["train/a/0", "train/a/1", "train/b/0", "train/b/1"],
                        "thin": ["train/a/0", "train/b/0", "train/b/1", "test/a/0", "test/b/0"]}.items():
        for i, f in enumerate(files):
            (root / tree / f).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40 * i, 90, 200 - 30 * i)).save(root / tree / f"{f}.png")
    (root / "garbage.safetensors").write_bytes(b"\x13\x37 definitely not safetensors")
    data = (root / "b.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[-3] ^= 0x10
    (root / "flipped.safetensors").write_bytes(bytes(flipped))
    b = root / "b.safetensors"
    for name, meta in {"m_budget": {"budget": "2.5"}, "m_method": {"method": "magic"}, "m_size": {"image_size": "-16"},
                       "m_view": {"views": '["identity", "rot45"]'}, "m_mean": {"mean": "[0.5]"},
                       "m_std": {"std": "[0.2, 0.0, 0.3]"}, "m_newer": {"format_version": "9"},
                       "m_json": {"storage": "{not json"}}.items():
        _rewrite(b, root / f"{name}.safetensors", meta=meta)
    _rewrite(b, root / "t_half.safetensors", tensors=lambda t: t.update(image_coeffs=t["image_coeffs"].half()))
    _rewrite(b, root / "t_huge.safetensors", tensors=lambda t: t.update(repr_mean=t["repr_mean"] * 1e12))
    _rewrite(b, root / "t_width.safetensors",
             tensors=lambda t: t.update({"approx.rot90.2.weight": t["approx.rot90.2.weight"][:, :2].contiguous()}))
    nan_teacher = root / "t_nan.safetensors"
    _rewrite(root / "t.safetensors", nan_teacher,
             tensors=lambda t: t.update({k: torch.full_like(v, float("nan")) for k, v in t.items() if k.endswith("weight")}))
    torch.save({"epoch": 3, "note": "no tensors here"}, root / "plain.pt")
    (root / "broken.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    (root / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 a gzip header and then nothing useful")
    (root / "bad.toml").write_text("[distill\npool_size = ")
    (root / "tables.toml").write_text("[distill]\nlr = 0.1\n[training]\nsteps = 3\n")
    (root / "left.safetensors.ckpt").write_bytes(b"a checkpoint of an interrupted run")
    (root / "report.json").write_text("{}")
    os.symlink(root / "notes.txt", root / "link.safetensors")
    return root


CASES: list[tuple[str, list[str], int, str]] = [
    # distill: values and ranges, before any work
    ("budget-zero", [*D, "--budget", "0", "-o", "x.safetensors"], 2, "--budget must be a positive integer"),
    ("budget-negative", [*D, "--budget", "-5", "-o", "x.safetensors"], 2, "--budget must be"),
    ("budget-float", [*D, "--budget", "2.5", "-o", "x.safetensors"], 2, "Invalid value for '--budget'"),
    ("steps-negative", [*D, "--steps", "-1", "-o", "x.safetensors"], 2, "--steps must be ≥ 0"),
    ("lr-nan", [*D, "--lr", "nan", "-o", "x.safetensors"], 2, "lr must be a finite number"),
    ("lr-inf", [*D, "--lr", "inf", "-o", "x.safetensors"], 2, "lr must be a finite number"),
    ("lr-negative", [*D, "--lr", "-0.1", "-o", "x.safetensors"], 2, "--lr must be > 0"),
    ("lr-zero", [*D, "--lr", "0", "-o", "x.safetensors"], 2, "--lr must be > 0"),
    ("minutes-negative", [*D, "--minutes", "-1", "-o", "x.safetensors"], 2, "--minutes must be > 0"),
    ("minutes-zero", [*D, "--minutes", "0", "-o", "x.safetensors"], 2, "--minutes must be > 0"),
    ("batch-zero", [*D, "--batch-size", "0", "-o", "x.safetensors"], 2, "--batch-size must be ≥ 1"),
    ("method-unknown", [*D, "--method", "magic", "-o", "x.safetensors"], 2, "unknown method 'magic'"),
    ("preset-unknown", [*D, "--preset", "gpu", "-o", "x.safetensors"], 2, "unknown preset 'gpu'"),
    ("view-unknown", [*D, "--views", "identity,rot45", "-o", "x.safetensors"], 2, "unknown view 'rot45'"),
    ("view-twice", [*D, "--views", "rot90,rot90", "-o", "x.safetensors"], 2, "listed twice"),
    ("init-unknown", [*D, "--init", "fancy", "-o", "x.safetensors"], 2, "init must be pca or random"),
    ("num-images-zero", [*D, "--num-images", "0", "-o", "x.safetensors"], 2, "--num-images must be ≥ 1"),
    ("image-rank-zero", [*D, "--image-rank", "0", "-o", "x.safetensors"], 2, "--image-rank must be ≥ 1"),
    ("set-typo", [*D, "--set", "pool_sise=2", "-o", "x.safetensors"], 2, "did you mean 'pool_size'"),
    ("set-type", [*D, "--set", "pool_size=two", "-o", "x.safetensors"], 2, "must be an integer"),
    ("set-no-value", [*D, "--set", "ridge", "-o", "x.safetensors"], 2, "--set takes KEY=VALUE"),
    ("set-choice", [*D, "--set", "approx_mode=sometimes", "-o", "x.safetensors"], 2, "approx_mode must be after or joint"),
    ("set-pool-zero", [*D, "--set", "pool_size=0", "-o", "x.safetensors"], 2, "pool_size must be ≥ 1"),
    ("set-lr-targets", [*D, "--set", "lr_targets=-1", "-o", "x.safetensors"], 2, "lr_targets must be > 0"),
    ("set-grad-clip", [*D, "--set", "grad_clip=-1", "-o", "x.safetensors"], 2, "grad_clip must be ≥ 0"),
    ("set-ridge-nan", [*D, "--set", "ridge=nan", "-o", "x.safetensors"], 2, "ridge must be a finite number"),
    ("raw-space-boost", [*D, "--set", "raw_space=true", "-o", "x.safetensors"], 2, "applies to --method krr-st only"),
    ("krr-views", [*D, "--method", "krr-st", "--views", "identity,rot90", "-o", "x.safetensors"], 2,
     "--views and bases apply to --method boost"),
    ("krr-over-budget", [*D, "--method", "krr-st", "--budget", "4", "--num-images", "9", "-o", "x.safetensors"], 2,
     "allows at most 4"),
    ("bases-over-budget", [*D, "--budget", "1", "--image-rank", "100", "-o", "x.safetensors"], 2, "bases alone"),
    ("pool-arch-unknown", [*D, "--set", "pool_arch=convnet99", "-o", "x.safetensors"], 2, "unknown architecture"),
    ("select-unknown", [*D, "--set", "select=best", "-o", "x.safetensors"], 2, "select must be uniform or kmeans"),
    ("select-random-baseline", [*D, "--method", "random", "--set", "select=kmeans", "-o", "x.safetensors"], 2,
     "select applies to krr-st and boost"),
    ("targets-of-krr", [*D, "--method", "krr-st", "--set", "targets_of=decoded", "-o", "x.safetensors"], 2,
     "it needs bases"),
    ("orthonormalise-krr", [*D, "--method", "krr-st", "--set", "orthonormalise_every=10", "-o", "x.safetensors"], 2,
     "orthonormalise_every re-orthonormalises bases; it needs bases"),
    ("orthonormalise-negative", [*D, "--set", "orthonormalise_every=-1", "-o", "x.safetensors"], 2,
     "orthonormalise_every must be ≥ 0"),
    ("config-missing", [*D, "--config", "missing.toml", "-o", "x.safetensors"], 2, "cannot read config file"),
    ("config-invalid", [*D, "--config", "bad.toml", "-o", "x.safetensors"], 2, "is not valid TOML"),
    ("config-table", [*D, "--config", "tables.toml", "-o", "x.safetensors"], 2, "unexpected table(s) ['training']"),
    ("image-size-zero", ["distill", "shapes", "--teacher", "t.safetensors", "--image-size", "0", "-o", "x.safetensors"],
     2, "image_size must be >= 1"),
    ("device-cuda", [*D, "--device", "cuda:7" if torch.cuda.is_available() else "cuda", "-o", "x.safetensors"], 6, "cuda"),
    ("device-unknown", [*D, "--device", "tpu", "-o", "x.safetensors"], 6, "unknown device 'tpu'"),
    ("threads-zero", [*D, "--threads", "0", "-o", "x.safetensors"], 2, "--threads must be ≥ 1"),
    ("threads-word", [*D, "--threads", "many", "-o", "x.safetensors"], 2, "--threads takes a count or auto"),
    # distill: data, teacher and outputs
    ("dataset-unknown", ["distill", "no-such-set", "--teacher", "t.safetensors", "-o", "x.safetensors"], 3,
     "unknown dataset"),
    ("dataset-broken-archive", ["distill", "broken.tar.gz", "--teacher", "t.safetensors", "-o", "x.safetensors"], 3,
     "cannot read archive"),
    ("more-images-than-data", [*D, "--method", "krr-st", "--budget", "6000", "-o", "x.safetensors"], 2,
     "has only 5000"),
    ("teacher-missing", ["distill", "shapes", "--teacher", "nope.safetensors", *TINY, "-o", "x.safetensors"], 4,
     "no such file"),
    ("teacher-is-bundle", ["distill", "shapes", "--teacher", "b.safetensors", *TINY, "-o", "x.safetensors"], 4,
     "not an ssdd teacher file"),
    ("teacher-garbage", ["distill", "shapes", "--teacher", "garbage.safetensors", *TINY, "-o", "x.safetensors"], 4,
     "not a readable safetensors"),
    ("teacher-nan", ["distill", "shapes", "--teacher", "t_nan.safetensors", *TINY, "-o", "x.safetensors"], 4,
     "contains NaN or infinity"),
    ("teacher-resolution", ["distill", "shapes", "--teacher", "t.safetensors", "--preset", "cpu", "--image-size", "8",
                            "--device", "cpu", "-o", "x.safetensors"], 2, "trained at 16 px"),
    ("output-exists", [*D, "-o", "notes.txt"], 7, "already exists"),
    ("output-is-dir", [*D, "-o", "mydir", "--overwrite"], 7, "is a directory"),
    ("output-symlink", [*D, "-o", "link.safetensors", "--overwrite"], 7, "is a symbolic link"),
    ("output-device", [*D, "-o", "/dev/null", "--overwrite"], 7, "is a character device"),
    ("output-fifo", [*D, "-o", "fifo", "--overwrite"], 7, "is a FIFO"),
    ("output-under-file", [*D, "-o", "notes.txt/x.safetensors"], 7, "is a file"),
    ("output-name-too-long", [*D, "-o", "n" * 262 + ".safetensors"], 7, "bytes long"),
    ("resume-nothing", [*D, "--resume", "-o", "x.safetensors"], 2, "--resume: no checkpoint"),
    ("leftover-checkpoint", [*D, "-o", "left.safetensors"], 7, "checkpoint of an interrupted run"),
    # teacher
    ("teacher-nothing", ["teacher"], 2, "give a DATASET"),
    ("import-no-output", ["teacher", "--import", "plain.pt"], 2, "--import needs -o FILE"),
    ("import-missing", ["teacher", "--import", "missing.pt", "-o", "x.safetensors"], 5, "no such checkpoint"),
    ("import-garbage", ["teacher", "--import", "broken.pt", "-o", "x.safetensors"], 5, "cannot read checkpoint"),
    ("import-no-tensors", ["teacher", "--import", "plain.pt", "-o", "x.safetensors"], 5, "not a state dict of tensors"),
    ("import-arch", ["teacher", "--import", "plain.pt", "--arch", "convnet99", "-o", "x.safetensors"], 2,
     "unknown architecture"),
    ("teacher-steps-zero", ["teacher", "shapes", "--steps", "0", "-o", "x.safetensors"], 2, "--steps must be ≥ 1"),
    ("teacher-batch-one", ["teacher", "shapes", "--batch-size", "1", "-o", "x.safetensors"], 2, "≥ 2 for Barlow Twins"),
    ("teacher-arch", ["teacher", "shapes", "--arch", "convnet99", "-o", "x.safetensors"], 2, "unknown architecture"),
    ("teacher-lr-nan", ["teacher", "shapes", "--lr", "nan", "-o", "x.safetensors"], 2, "lr must be a finite number"),
    ("teacher-optimizer", ["teacher", "shapes", "--set", "optimizer=adagrad", "-o", "x.safetensors"], 2,
     "optimizer must be lars, adamw or sgd"),
    ("teacher-output-exists", ["teacher", "shapes", "-o", "t.safetensors"], 7, "already exists"),
    # inspect: corrupt and hostile files
    ("inspect-missing", ["inspect", "nope.safetensors"], 4, "no such file"),
    ("inspect-garbage", ["inspect", "garbage.safetensors"], 4, "not a readable safetensors"),
    ("inspect-dir", ["inspect", "mydir"], 4, "is a directory"),
    ("inspect-teacher", ["inspect", "t.safetensors"], 4, "teacher file"),
    ("inspect-truncated", ["inspect", "truncated.safetensors"], 4, "not a readable safetensors"),
    ("inspect-flipped-bits", ["inspect", "flipped.safetensors", "--verify"], 4, "does not match its recorded checksum"),
    ("meta-budget", ["inspect", "m_budget.safetensors"], 4, "'budget' is not a valid int"),
    ("meta-method", ["inspect", "m_method.safetensors"], 4, "unknown method 'magic'"),
    ("meta-image-size", ["inspect", "m_size.safetensors"], 4, "image_size=-16 is out of range"),
    ("meta-view", ["inspect", "m_view.safetensors"], 4, "unknown view 'rot45'"),
    ("meta-mean", ["inspect", "m_mean.safetensors"], 4, "mean=[0.5] is out of range"),
    ("meta-std", ["inspect", "m_std.safetensors"], 4, "std="),
    ("meta-newer", ["inspect", "m_newer.safetensors"], 4, "newer than this ssdd"),
    ("meta-json", ["inspect", "m_json.safetensors"], 4, "'storage' is not a valid json"),
    ("tensor-half", ["inspect", "t_half.safetensors"], 4, "has dtype float16"),
    ("tensor-huge", ["inspect", "t_huge.safetensors"], 4, "where rebuilding the pairs could overflow"),
    ("tensor-width", ["expand", "t_width.safetensors", "-o", "out"], 4, "approximation network for 'rot90'"),
    ("evaluate-corrupt", ["evaluate", "m_view.safetensors", "--device", "cpu"], 4, "unknown view 'rot45'"),
    # expand: never destroy
    ("expand-user-folder", ["expand", "b.safetensors", "-o", "mydir", "--overwrite"], 7, "not written by `ssdd expand`"),
    ("expand-over-input", ["expand", "sb/set.safetensors", "-o", "sb", "--overwrite"], 7, "an input of this command"),
    ("expand-cwd", ["expand", "b.safetensors", "-o", ".", "--overwrite"], 7, "the working folder"),
    ("expand-added-file", ["expand", "b.safetensors", "-o", "exp_plus", "--overwrite"], 7, "mine.txt, which ssdd did not"),
    ("expand-exists", ["expand", "b.safetensors", "-o", "exp"], 7, "already exists"),
    ("expand-view", ["expand", "b.safetensors", "-o", "out", "--views", "hflip"], 2, "not in this bundle"),
    ("expand-over-file", ["expand", "b.safetensors", "-o", "notes.txt", "--overwrite"], 7, "is a file, not a folder ssdd wrote"),
    # evaluate
    ("evaluate-nothing", ["evaluate", "--device", "cpu"], 2, "give a BUNDLE"),
    ("evaluate-baseline-unknown", ["evaluate", "b.safetensors", "--baseline", "bogus", "--device", "cpu"], 2,
     "unknown baseline 'bogus'; choose one of: full, random"),
    ("evaluate-baseline-none-mixed", ["evaluate", "b.safetensors", "--baseline", "none", "--baseline", "random",
                                      "--device", "cpu"], 2, "--baseline none cannot be combined"),
    ("evaluate-bundle-twice", ["evaluate", "b.safetensors", "./b.safetensors", "--device", "cpu"], 2, "given twice"),
    ("evaluate-json-is-bundle", ["evaluate", "b.safetensors", "--json", "b.safetensors", "--overwrite", "--device", "cpu"],
     2, "is an input bundle"),
    ("evaluate-json-in-report", ["evaluate", "b.safetensors", "--json", "rep/x.json", "--report", "rep", "--device", "cpu"],
     2, "inside the --report folder"),
    ("evaluate-report-user-folder", ["evaluate", "b.safetensors", "--report", "mydir", "--overwrite", "--device", "cpu"],
     7, "not written by"),
    ("evaluate-protocol", ["evaluate", "b.safetensors", "--protocol", "probe", "--device", "cpu"], 2,
     "error: --protocol must be one or more of linear, finetune, knn, got probe"),
    ("evaluate-arch-size", ["evaluate", "b.safetensors", "--arch", "vgg11", "--device", "cpu"], 2,
     "vgg11 cannot take 16-px images"),
    ("evaluate-target-no-test", ["evaluate", "b.safetensors", "--target", "notest", "--device", "cpu"], 3, "test"),
    ("evaluate-target-thin", ["evaluate", "b.safetensors", "--target", "thin", "--device", "cpu"], 3,
     "class 'a' has 1 training image(s)"),
    ("evaluate-baseline-trains", ["evaluate", "b.safetensors", "--baseline", "boost", "--device", "cpu"], 2,
     "--baseline boost distils"),
    ("evaluate-arch", ["evaluate", "b.safetensors", "--arch", "convnet99", "--device", "cpu"], 2, "unknown architecture"),
    ("evaluate-epochs", ["evaluate", "b.safetensors", "--epochs", "-1", "--device", "cpu"], 2, "--epochs must be ≥ 0"),
    ("evaluate-seeds", ["evaluate", "b.safetensors", "--seeds", "0", "--device", "cpu"], 2, "seeds must be ≥ 1"),
    ("evaluate-json-exists", ["evaluate", "b.safetensors", "--json", "report.json", "--device", "cpu"], 7,
     "already exists"),
    ("evaluate-probe-lr", ["evaluate", "b.safetensors", "--set", "probe_lr=nan", "--device", "cpu"], 2,
     "probe_lr must be a finite number"),
    ("evaluate-baseline-no-teacher", ["evaluate", "--baseline", "random", "--source", "shapes", "--device", "cpu"], 2,
     "needs the teacher"),
    # the command line itself
    ("unknown-command", ["frobnicate"], 2, "No such command 'frobnicate'"),
    ("unknown-option", ["inspect", "b.safetensors", "--bogus"], 2, "No such option: --bogus"),
    ("missing-argument", ["distill"], 2, "Missing argument"),
    ("settings-unknown", ["settings", "training"], 2, "unknown command 'training'"),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind and, for files, a hash of its bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            mode = os.lstat(p).st_mode
            if stat.S_ISREG(mode):
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p.relative_to(root))] = stat.filemode(mode)[0] + (os.readlink(p) if stat.S_ISLNK(mode) else "")
    return out


@pytest.mark.parametrize("args, code, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(args: list[str], code: int, text: str, base: Path, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    shutil.copytree(base, work, symlinks=True)
    os.mkfifo(work / "fifo")
    dev_null = os.stat("/dev/null")
    monkeypatch.chdir(work)
    before = _snapshot(work)
    fails(invoke(*args), code, text)
    assert _snapshot(work) == before  # nothing left behind, nothing changed
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_rdev == dev_null.st_rdev


def test_catalogue_size() -> None:
    """The catalogue covers at least 60 cases, each with a distinct name."""
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_the_snapshot_sees_changes(tmp_path: Path) -> None:
    """The before/after comparison above detects a changed, an added and a removed file."""
    (tmp_path / "a").write_text("1")
    before = _snapshot(tmp_path)
    (tmp_path / "a").write_text("2")
    assert _snapshot(tmp_path) != before
    (tmp_path / "a").write_text("1")
    (tmp_path / ".hidden.ssdd-tmp").write_text("left")
    assert _snapshot(tmp_path) != before



def test_disk_full_is_one_line(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safetensors writer's own I/O error (a full disk) is an output error, and the temporary is removed."""
    import safetensors.torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    work = tmp_path / "work"
    shutil.copytree(base, work, symlinks=True)
    monkeypatch.chdir(work)
    before = _snapshot(work)
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    fails(invoke("distill", *D[1:], "--set", "image_fit_steps=5", "-o", "x.safetensors"), 7, "No space left on device")
    assert _snapshot(work) == before
