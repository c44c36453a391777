"""THE file formats of ssdd: the distilled-set bundle and the teacher file (both safetensors).

This module holds the only ``safe_open``/``save_file`` calls of the package for these artifacts,
the tensor key names and :data:`FORMAT_VERSION`. The format is specified in
``docs/bundle-format.md``; changing a key or the metadata layout means bumping the version.

Bundle tensors (float32), by parameterisation:

* pixel images: ``images`` ``(m, C, H, W)`` in normalised space (see ``image_space``);
* basis images: ``image_basis`` ``(U, P)``, ``image_mean`` ``(P,)``, ``image_coeffs`` ``(m, U)``
  with ``P = C·b·b`` at basis side ``b``;
* pixel targets: ``targets`` ``(m, D)``;
* basis targets: ``repr_basis`` ``(V, D)``, ``repr_mean`` ``(D,)``, ``repr_coeffs`` ``(m, V)``;
* per non-identity view ``a``: approximation network ``approx.<a>.{0,2}.{weight,bias}``
  (``Linear(c, k) → ReLU → Linear(k, c)`` on the coefficient space ``c``), or, without
  approximation, the view's own coefficients ``view_coeffs.<a>`` / targets ``view_targets.<a>``.

Metadata (str → str; nested values are JSON): see :data:`REQUIRED_METADATA`.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import BundleError, OutputError
from .paths import atomic_file, check_output

FORMAT_VERSION = 1
BUNDLE_FORMAT = "ssdd.bundle"
TEACHER_FORMAT = "ssdd.teacher"

IMAGE_KEYS = ("images",)
IMAGE_BASIS_KEYS = ("image_basis", "image_mean", "image_coeffs")
TARGET_KEYS = ("targets",)
REPR_BASIS_KEYS = ("repr_basis", "repr_mean", "repr_coeffs")

REQUIRED_METADATA = (
    "format",
    "format_version",
    "method",
    "source",
    "image_size",
    "channels",
    "mean",
    "std",
    "image_space",
    "views",
    "teacher",
    "budget",
    "storage",
    "config",
    "ssdd_version",
    "created",
)
_JSON_FIELDS = ("mean", "std", "views", "teacher", "storage", "config", "counts", "fit", "history", "extra")


def _version() -> str:
    from . import __version__

    return __version__


def _read(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise BundleError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise BundleError(f"{path} is a directory; give the {what} file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{path}: not a readable safetensors {what} ({first}); was it written by ssdd?") from exc
    return tensors, meta


def _write(path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], overwrite: bool) -> None:
    from safetensors.torch import save_file

    check_output(path, overwrite)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        with atomic_file(path) as tmp:
            save_file(clean, str(tmp), metadata=dict(meta))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from exc


def _encode(meta: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in meta.items():
        out[key] = value if isinstance(value, str) and key not in _JSON_FIELDS else json.dumps(value, sort_keys=True)
    return out


def _decode(meta: Mapping[str, str], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key in _JSON_FIELDS:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise BundleError(f"{path}: metadata field {key!r} is not valid JSON; the file is corrupt") from exc
        else:
            out[key] = value
    return out


def now_iso() -> str:
    """Creation timestamp (UTC, ISO 8601)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------------------------------------
# bundle


@dataclass
class Bundle:
    """A distilled set as stored: float tensors plus decoded metadata."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """Registry key of the method that made it."""
        return str(self.meta["method"])

    @property
    def views(self) -> list[str]:
        """Predefined views, identity first."""
        return list(self.meta["views"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        s = int(self.meta["image_size"])
        return (int(self.meta["channels"]), s, s)

    @property
    def has_image_basis(self) -> bool:
        """Whether images are stored as bases and coefficients."""
        return "image_basis" in self.tensors

    @property
    def has_repr_basis(self) -> bool:
        """Whether targets are stored as bases and coefficients."""
        return "repr_basis" in self.tensors

    @property
    def num_images(self) -> int:
        """Number of distilled images ``m``."""
        key = "image_coeffs" if self.has_image_basis else "images"
        return int(self.tensors[key].shape[0])

    @property
    def repr_dim(self) -> int:
        """Teacher representation size ``D``."""
        key = "repr_basis" if self.has_repr_basis else "targets"
        return int(self.tensors[key].shape[-1])

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean of the source data."""
        return tuple(float(v) for v in self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation std of the source data."""
        return tuple(float(v) for v in self.meta["std"])

    def storage(self) -> Any:
        """Storage report computed from the stored tensors (never from metadata)."""
        from .storage import storage_report

        shapes = {k: tuple(v.shape) for k, v in self.tensors.items() if v.is_floating_point()}
        return storage_report(shapes, image_shape=self.image_shape, method=self.method, num_images=self.num_images)


def validate_bundle(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], where: str) -> None:
    """Check version, required keys and the shapes that must agree; raise :class:`BundleError`."""
    if meta.get("format") != BUNDLE_FORMAT:
        kind = "an ssdd teacher file" if meta.get("format") == TEACHER_FORMAT else "not an ssdd bundle"
        raise BundleError(f"{where}: {kind} (format={meta.get('format')!r}); pass a bundle made by `ssdd distill`")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError as exc:
        raise BundleError(f"{where}: bad format_version {meta.get('format_version')!r}") from exc
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format v{version} is newer than this ssdd (v{FORMAT_VERSION}); upgrade ssdd"
        )
    if version < 1:
        raise BundleError(f"{where}: unknown bundle format version {version}")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise BundleError(f"{where}: missing metadata {', '.join(missing)}; the file is incomplete or corrupt")
    has_pix, has_basis = "images" in tensors, all(k in tensors for k in IMAGE_BASIS_KEYS)
    if has_pix == has_basis:
        raise BundleError(
            f"{where}: needs either 'images' or all of {', '.join(IMAGE_BASIS_KEYS)}; the file is incomplete"
        )
    has_t, has_rb = "targets" in tensors, all(k in tensors for k in REPR_BASIS_KEYS)
    if has_t == has_rb:
        raise BundleError(
            f"{where}: needs either 'targets' or all of {', '.join(REPR_BASIS_KEYS)}; the file is incomplete"
        )
    c, s = int(meta["channels"]), int(meta["image_size"])
    if has_pix:
        m = tensors["images"].shape[0]
        if tuple(tensors["images"].shape[1:]) != (c, s, s):
            raise BundleError(f"{where}: 'images' has shape {tuple(tensors['images'].shape)}, expected (m, {c}, {s}, {s})")
    else:
        u, p = tensors["image_basis"].shape
        m = tensors["image_coeffs"].shape[0]
        if tensors["image_coeffs"].shape[1] != u or tensors["image_mean"].shape != (p,):
            raise BundleError(f"{where}: image basis/coefficient/mean shapes disagree")
        b = int(meta.get("basis_size", s))
        if p != c * b * b:
            raise BundleError(f"{where}: image basis width {p} != C·b·b = {c * b * b}")
    if has_t:
        d = tensors["targets"].shape[1]
        if tensors["targets"].shape[0] != m:
            raise BundleError(f"{where}: {tensors['targets'].shape[0]} targets for {m} images")
        coef = d
    else:
        v, d = tensors["repr_basis"].shape
        if tensors["repr_coeffs"].shape != (m, v) or tensors["repr_mean"].shape != (d,):
            raise BundleError(f"{where}: representation basis/coefficient/mean shapes disagree")
        coef = v
    views = list(meta["views"])
    if not views or views[0] != "identity":
        raise BundleError(f"{where}: view list {views} must start with 'identity'")
    for view in views[1:]:
        net = [f"approx.{view}.0.weight", f"approx.{view}.0.bias", f"approx.{view}.2.weight", f"approx.{view}.2.bias"]
        stored = "view_coeffs." + view if has_rb else "view_targets." + view
        if all(k in tensors for k in net):
            if tensors[net[0]].shape[1] != coef or tensors[net[2]].shape[0] != coef:
                raise BundleError(f"{where}: approximation network for {view!r} has the wrong width")
        elif stored in tensors:
            if tuple(tensors[stored].shape) != (m, coef):
                raise BundleError(f"{where}: {stored!r} has shape {tuple(tensors[stored].shape)}, expected ({m}, {coef})")
        else:
            raise BundleError(f"{where}: view {view!r} has neither an approximation network nor stored targets")
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise BundleError(f"{where}: tensor {key!r} has dtype {t.dtype}, expected a float")
        if not torch.isfinite(t).all():
            raise BundleError(f"{where}: tensor {key!r} contains NaN or infinity")


def save_bundle(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Validate and write a bundle atomically (refuses an existing path unless ``overwrite``)."""
    path = Path(path)
    full = {"format": BUNDLE_FORMAT, "format_version": str(FORMAT_VERSION), "ssdd_version": _version(),
            "created": now_iso(), **meta}
    full["format_version"] = str(FORMAT_VERSION)
    tensors = {k: v.detach().float() for k, v in tensors.items()}
    validate_bundle(tensors, full, str(path))
    _write(path, tensors, _encode(full), overwrite)
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle.

    Raises:
        BundleError: missing, unreadable, not a bundle, newer format, or inconsistent tensors.
    """
    path = Path(path)
    tensors, raw = _read(path, "bundle")
    meta = _decode(raw, path)
    validate_bundle(tensors, meta, str(path))
    return Bundle(tensors, meta, path)


# ---------------------------------------------------------------------------------------------
# teacher file


TEACHER_REQUIRED = ("format", "format_version", "arch", "repr_dim", "image_size", "mean", "std", "stem_padding")


@dataclass
class TeacherFile:
    """A teacher as stored: backbone state dict (bare keys) and metadata."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None


def save_teacher_file(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write a teacher file atomically."""
    path = Path(path)
    full = {"format": TEACHER_FORMAT, "format_version": str(FORMAT_VERSION), "ssdd_version": _version(),
            "created": now_iso(), **meta}
    enc = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in full.items()}
    _write(path, state_dict, enc, overwrite)
    return path


def load_teacher_file(path: str | Path) -> TeacherFile:
    """Read a teacher file written by ``ssdd teacher``.

    Raises:
        BundleError: missing, unreadable or not a teacher file.
    """
    path = Path(path)
    tensors, raw = _read(path, "teacher")
    if raw.get("format") != TEACHER_FORMAT:
        hint = " (that is a distilled-set bundle)" if raw.get("format") == BUNDLE_FORMAT else ""
        raise BundleError(
            f"{path}: not an ssdd teacher file{hint}; make one with `ssdd teacher DATASET -o FILE` "
            "or convert a checkpoint with `ssdd teacher --import CKPT`"
        )
    missing = [k for k in TEACHER_REQUIRED if k not in raw]
    if missing:
        raise BundleError(f"{path}: teacher metadata lacks {', '.join(missing)}; the file is corrupt")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise BundleError(f"{path}: teacher format v{meta['format_version']} is newer than this ssdd; upgrade ssdd")
    return TeacherFile(tensors, meta, path)


# ---------------------------------------------------------------------------------------------
# plain tensor files (expanded pairs, caches)


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str] | None = None) -> None:
    """Write plain tensors with string metadata atomically (no format checks)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_file(path) as tmp:
        save_file(clean, str(tmp), metadata=dict(meta or {}))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read plain tensors and metadata."""
    return _read(Path(path), "tensor file")
