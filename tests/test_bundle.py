"""The bundle format (bundle.py, docs/bundle-format.md): round trips, golden key names, refusals."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ssdd_cli import bundle as bundle_mod
from ssdd_cli.bundle import FORMAT_VERSION, REQUIRED_METADATA, load_bundle, save_bundle
from ssdd_cli.errors import BundleError, OutputError
from ssdd_cli.expand import expand_pairs

BOOST_KEYS = sorted(
    ["image_basis", "image_mean", "image_coeffs", "repr_basis", "repr_mean", "repr_coeffs"]
    + [f"approx.{v}.{n}" for v in ("rot90", "rot180", "rot270") for n in ("0.weight", "0.bias", "2.weight", "2.bias")]
)
DISTILL_META = sorted([
    "method", "source", "image_size", "channels", "basis_size", "mean", "std", "image_space", "views", "teacher",
    "budget", "storage", "config", "counts", "seed", "fit", "history",
])


def raw_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def assert_round_trip(result, path: Path) -> None:  # type: ignore[no-untyped-def]
    save_bundle(path, result.tensors, result.meta)
    b = load_bundle(path)
    assert set(b.tensors) == set(result.tensors)
    for k, v in result.tensors.items():
        assert b.tensors[k].dtype == torch.float32
        assert torch.equal(b.tensors[k], v), k
    written = ("ssdd_version", "created", "checksum")
    assert dataclasses.replace(b.meta, **{k: "" for k in written}) == dataclasses.replace(result.meta, **{k: "" for k in written})
    assert b.meta.checksum == bundle_mod.tensor_checksum(b.tensors)
    assert b.meta.format_version == FORMAT_VERSION and b.meta.created and b.meta.ssdd_version
    assert isinstance(b.meta.budget, int) and isinstance(b.meta.image_size, int)  # decoded once, typed
    assert b.path == path


def test_round_trip_pixel_set(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A KRR-ST (pixel) bundle keeps its tensors and metadata exactly."""
    res = tiny_results["krr_st"]
    assert set(res.tensors) == {"images", "targets"}
    assert_round_trip(res, tmp_path / "krr.safetensors")
    b = load_bundle(tmp_path / "krr.safetensors")
    assert b.method == "krr_st" and b.num_images == 8 and b.repr_dim == 32 and b.views == ["identity"]
    assert b.image_shape == (3, 16, 16) and not b.has_image_basis and not b.has_repr_basis
    assert b.storage().cost == 8.0


def test_round_trip_boost_set(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A basis bundle with approximation networks keeps its tensors and metadata exactly."""
    res = tiny_results["boost"]
    assert_round_trip(res, tmp_path / "boost.safetensors")
    b = load_bundle(tmp_path / "boost.safetensors")
    assert b.has_image_basis and b.has_repr_basis and b.views == ["identity", "rot90", "rot180", "rot270"]
    assert b.storage().cost == pytest.approx(res.meta.storage["cost"], abs=1e-4)


def test_golden_names(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Pin the format: version 1, the tensor keys of a boost bundle and the metadata field names.

    Changing any of these is a format change and must bump FORMAT_VERSION (and docs/bundle-format.md).
    """
    assert FORMAT_VERSION == 2
    assert bundle_mod.BUNDLE_FORMAT == "ssdd.bundle" and bundle_mod.TEACHER_FORMAT == "ssdd.teacher"
    assert REQUIRED_METADATA == ("format", "format_version", "method", "source", "image_size", "channels", "mean",
                                 "std", "image_space", "views", "teacher", "budget", "storage", "config",
                                 "ssdd_version", "created")
    res = tiny_results["boost"]
    assert sorted(res.tensors) == BOOST_KEYS
    save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta)
    tensors, meta = raw_file(tmp_path / "b.safetensors")
    assert sorted(tensors) == BOOST_KEYS
    assert sorted(meta) == sorted(DISTILL_META + ["format", "format_version", "ssdd_version", "created", "checksum"])
    assert meta["format_version"] == "2" and meta["format"] == "ssdd.bundle" and meta["checksum"].startswith("sha256:")
    assert json.loads(meta["views"]) == ["identity", "rot90", "rot180", "rot270"]  # nested values are JSON
    assert meta["method"] == "boost" and meta["image_size"] == "16"  # plain strings stay plain
    m, u, v, k = (res.meta.counts[c] for c in ("m", "U", "V", "k"))
    d, p = 32, 3 * 8 * 8
    assert tensors["image_basis"].shape == (u, p) and tensors["image_coeffs"].shape == (m, u)
    assert tensors["repr_basis"].shape == (v, d) and tensors["repr_coeffs"].shape == (m, v)
    assert tensors["approx.rot90.0.weight"].shape == (k, v) and tensors["approx.rot90.2.weight"].shape == (v, k)


def test_refuses_to_overwrite(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An existing path is refused (OutputError, file unchanged) unless overwrite=True."""
    path = tmp_path / "b.safetensors"
    path.write_bytes(b"precious")
    res = tiny_results["krr_st"]
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        save_bundle(path, res.tensors, res.meta)
    assert path.read_bytes() == b"precious"
    save_bundle(path, res.tensors, res.meta, overwrite=True)
    assert load_bundle(path).num_images == 8


def test_truncated_file(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A truncated bundle raises BundleError('... not a readable safetensors ...')."""
    path = tmp_path / "b.safetensors"
    save_bundle(path, tiny_results["boost"].tensors, tiny_results["boost"].meta)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(path)
    path.write_bytes(b"")
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(path)


def _rewrite(src: Path, dst: Path, *, drop: str | None = None, meta_update: dict[str, str] | None = None) -> Path:
    tensors, meta = raw_file(src)
    if drop:
        del tensors[drop]
        meta["checksum"] = bundle_mod.tensor_checksum(tensors)  # a consistent file that lacks the tensor
    meta.update(meta_update or {})
    save_file(tensors, str(dst), metadata=meta)
    return dst


def test_newer_format_version(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """format_version 3 is refused with a message saying it is newer."""
    good = save_bundle(tmp_path / "b.safetensors", tiny_results["boost"].tensors, tiny_results["boost"].meta)
    bad = _rewrite(good, tmp_path / "v3.safetensors", meta_update={"format_version": "3"})
    with pytest.raises(BundleError, match="newer"):
        load_bundle(bad)
    assert load_bundle(_rewrite(good, tmp_path / "v2.safetensors")).method == "boost"  # the rewrite itself is fine


def test_teacher_file_is_not_a_bundle(tiny_teacher_path: Path) -> None:
    """Passing a teacher file to load_bundle raises BundleError saying so."""
    with pytest.raises(BundleError, match="teacher file"):
        load_bundle(tiny_teacher_path)


@pytest.mark.parametrize("key, text", [
    ("repr_coeffs", "needs either 'targets' or all of"),
    ("image_basis", "needs either 'images' or all of"),
    ("approx.rot180.2.bias", "'rot180' has neither"),
])
def test_missing_tensor(tiny_results, tmp_path: Path, key: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """A bundle missing a tensor raises BundleError naming what is missing."""
    good = save_bundle(tmp_path / "b.safetensors", tiny_results["boost"].tensors, tiny_results["boost"].meta)
    with pytest.raises(BundleError, match=text):
        load_bundle(_rewrite(good, tmp_path / "bad.safetensors", drop=key))


def test_missing_metadata_and_not_found(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A missing metadata field, a missing file or a folder raise BundleError."""
    res = tiny_results["krr_st"]
    good = save_bundle(tmp_path / "good.safetensors", res.tensors, res.meta)
    tensors, meta = raw_file(good)
    del meta["teacher"]
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata=meta)
    with pytest.raises(BundleError, match="missing metadata teacher"):
        load_bundle(tmp_path / "x.safetensors")
    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path / "nope.safetensors")
    with pytest.raises(BundleError, match="directory"):
        load_bundle(tmp_path)


def test_invalid_tensors_are_refused(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """NaN values and mismatched shapes are refused before anything is written."""
    res = tiny_results["krr_st"]
    nan = dict(res.tensors, targets=res.tensors["targets"].clone())
    nan["targets"][0, 0] = float("nan")
    with pytest.raises(BundleError, match="NaN"):
        save_bundle(tmp_path / "a.safetensors", nan, res.meta)
    short = dict(res.tensors, targets=res.tensors["targets"][:3])
    with pytest.raises(BundleError, match="3 targets for 8 images"):
        save_bundle(tmp_path / "a.safetensors", short, res.meta)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_nothing(tiny_results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A write that fails half-way leaves no temporary file and no partial bundle."""
    import safetensors.torch

    def broken(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    (tmp_path / "keep.txt").write_text("x")
    res = tiny_results["boost"]
    with pytest.raises(OutputError, match="disk full"):
        save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_written_files_get_umask_permissions(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Atomic writes go through a 0600 temporary file; the result has the usual umask-derived mode."""
    import os

    old = os.umask(0o022)
    try:
        out = tmp_path / "perm.safetensors"
        save_bundle(out, tiny_results["krr_st"].tensors, tiny_results["krr_st"].meta)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


V1_FILES = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, method, keys", [
    ("v1_krr_st.safetensors", "krr_st", ["images", "targets"]),
    ("v1_boost.safetensors", "boost", BOOST_KEYS),
])
def test_bundles_written_before_the_redesign_still_load(name: str, method: str, keys: list[str], tmp_path: Path) -> None:
    """v1 bundles (written before the redesign, without a checksum) load, expand and re-save as v2."""
    path = V1_FILES / name
    b = load_bundle(path)
    assert b.method == method and sorted(b.tensors) == sorted(keys)
    assert b.meta.budget == 8 and b.meta.image_size == 16 and b.meta.teacher.arch == "convnet2_xs"
    images, targets = expand_pairs(b)
    assert images.shape[0] == targets.shape[0] == b.num_images * len(b.views)
    assert b.storage().cost == pytest.approx(b.meta.storage["cost"], abs=1e-4)
    assert b.meta.format_version == 1 and b.meta.checksum is None  # v1: no checksum stored
    again = save_bundle(tmp_path / "again.safetensors", b.tensors, b.meta)
    _, old_meta = raw_file(path)
    _, new_meta = raw_file(again)
    same = {k for k in old_meta if k not in ("created", "format_version")}
    assert {k: new_meta[k] for k in same} == {k: old_meta[k] for k in same}  # the v2 writer changes nothing else
    assert new_meta["format_version"] == "2" and load_bundle(again).meta.checksum == bundle_mod.tensor_checksum(b.tensors)


@pytest.mark.parametrize("field, value, text", [
    ("budget", "2.5", "'budget' is not a valid int"),
    ("image_size", "sixteen", "'image_size' is not a valid int"),
    ("views", "[identity", "'views' is not a valid json"),
    ("method", "magic", "unknown method 'magic'"),
    ("teacher", "{}", "lacks the teacher's arch"),
])
def test_malformed_metadata_values(tiny_results, tmp_path: Path, field: str, value: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Metadata decoded once, by type: a malformed value is a BundleError naming the field, not a crash later."""
    good = save_bundle(tmp_path / "b.safetensors", tiny_results["boost"].tensors, tiny_results["boost"].meta)
    with pytest.raises(BundleError, match=text):
        load_bundle(_rewrite(good, tmp_path / "bad.safetensors", meta_update={field: value}))


def test_flipped_bits_are_caught(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One flipped bit in the tensor data (valid float, right shape) fails the load with a checksum error."""
    path = save_bundle(tmp_path / "b.safetensors", tiny_results["boost"].tensors, tiny_results["boost"].meta)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data, a low mantissa bit
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its recorded checksum"):
        load_bundle(path)


@pytest.mark.parametrize("change, text", [
    ({"channels": "2"}, "channels=2 is out of range"),
    ({"image_size": "-16"}, "image_size=-16 is out of range"),
    ({"std": "[0.2, 0.0, 0.3]"}, "std="),
    ({"mean": "[0.5]"}, "mean=[0.5] is out of range (3 finite values"),
    ({"views": '["identity", "rot45"]'}, "unknown view 'rot45'"),
    ({"views": '["rot90", "identity"]'}, "views=['rot90', 'identity'] is out of range"),
    ({"image_space": "linear"}, "image_space='linear'"),
])
def test_out_of_range_metadata(tiny_results, tmp_path: Path, change: dict[str, str], text: str) -> None:  # type: ignore[no-untyped-def]
    """Values that decode but cannot be used are refused at load, so a bundle that loads can be expanded."""
    good = save_bundle(tmp_path / "b.safetensors", tiny_results["boost"].tensors, tiny_results["boost"].meta)
    with pytest.raises(BundleError, match=re.escape(text)):
        load_bundle(_rewrite(good, tmp_path / "bad.safetensors", meta_update=change))


@pytest.mark.parametrize("edit, text", [
    (lambda t: t.update(image_coeffs=t["image_coeffs"].half()), "has dtype float16"),
    (lambda t: t.update(repr_mean=t["repr_mean"] * 1e9), "beyond ±1e+06"),
    (lambda t: t.update({"approx.rot90.0.bias": t["approx.rot90.0.bias"][:2]}), "approximation network for 'rot90'"),
])
def test_unusable_tensors(tiny_results, tmp_path: Path, edit, text: str) -> None:  # type: ignore[no-untyped-def]
    """A half-precision tensor, values that would overflow when rebuilt, a network of inconsistent width: refused."""
    good = save_bundle(tmp_path / "b.safetensors", tiny_results["boost"].tensors, tiny_results["boost"].meta)
    tensors, meta = raw_file(good)
    edit(tensors)
    meta["checksum"] = bundle_mod.tensor_checksum(tensors)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(BundleError, match=re.escape(text)):
        load_bundle(tmp_path / "bad.safetensors")
