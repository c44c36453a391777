"""THE file formats of ssdd: the distilled-set bundle, the teacher file and plain tensor files.

This module owns the schema: the tensor key names (and the builders every other module uses), the
typed metadata (:class:`BundleMeta`, decoded once, integers as integers), the one metadata codec,
:data:`FORMAT_VERSION`, and the only ``safe_open``/``save_file`` calls of the package. The format is
specified in ``docs/bundle-format.md``; changing a key or the metadata layout means bumping the
version. Importing it does not import torch (``safetensors`` loads it when a file is read).

Bundle tensors (float32), by parameterisation:

* pixel images: ``images`` ``(m, C, H, W)`` in normalised space (see ``image_space``);
* basis images: ``image_basis`` ``(U, P)``, ``image_mean`` ``(P,)``, ``image_coeffs`` ``(m, U)``
  with ``P = C·b·b`` at basis side ``b``;
* pixel targets: ``targets`` ``(m, D)``;
* basis targets: ``repr_basis`` ``(V, D)``, ``repr_mean`` ``(D,)``, ``repr_coeffs`` ``(m, V)``;
* per non-identity view ``a``: approximation network ``approx.<a>.{0,2}.{weight,bias}``
  (``Linear(c, k) → ReLU → Linear(k, c)`` on the coefficient space ``c``), or, without
  approximation, the view's own coefficients ``view_coeffs.<a>`` / targets ``view_targets.<a>``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BundleError, ConfigError
from .paths import atomic_file, check_output, output_errors

if TYPE_CHECKING:
    import torch

    from .storage import StorageReport

FORMAT_VERSION = 2  # v2 adds the ``checksum`` of the tensor data; v1 files (no checksum) still load
CHECKSUM_KEY = "checksum"
BUNDLE_FORMAT = "ssdd.bundle"
TEACHER_FORMAT = "ssdd.teacher"

# ---------------------------------------------------------------------------------------------
# tensor keys

IMAGES, TARGETS = "images", "targets"
IMAGE_BASIS, IMAGE_MEAN, IMAGE_COEFFS = "image_basis", "image_mean", "image_coeffs"
REPR_BASIS, REPR_MEAN, REPR_COEFFS = "repr_basis", "repr_mean", "repr_coeffs"
IMAGE_BASIS_KEYS = (IMAGE_BASIS, IMAGE_MEAN, IMAGE_COEFFS)
REPR_BASIS_KEYS = (REPR_BASIS, REPR_MEAN, REPR_COEFFS)
#: parameter names of an approximation network ``Linear(c, k) → ReLU → Linear(k, c)``
APPROX_PARAMS = ("0.weight", "0.bias", "2.weight", "2.bias")


def approx_key(view: str, param: str) -> str:
    """Key of one parameter of view ``view``'s approximation network."""
    return f"approx.{view}.{param}"


def approx_keys(view: str) -> tuple[str, ...]:
    """The four keys of view ``view``'s approximation network, in :data:`APPROX_PARAMS` order."""
    return tuple(approx_key(view, p) for p in APPROX_PARAMS)


def view_coeffs_key(view: str) -> str:
    """Key of a view's own stored coefficients (basis targets, no approximation)."""
    return f"view_coeffs.{view}"


def view_targets_key(view: str) -> str:
    """Key of a view's own stored targets (pixel targets, no approximation)."""
    return f"view_targets.{view}"


#: tensor key → display group of the storage table (prefixes end with ".")
KEY_GROUPS = (
    (IMAGE_BASIS, "bases"), (REPR_BASIS, "bases"), (IMAGE_MEAN, "means"), (REPR_MEAN, "means"),
    (IMAGE_COEFFS, "coefficients"), (REPR_COEFFS, "coefficients"), ("view_coeffs.", "coefficients"),
    ("view_targets.", "targets"), ("approx.", "networks"), (IMAGES, "images"), (TARGETS, "targets"),
)


def group_of(key: str) -> str:
    """Display group of a bundle tensor key (``bases``, ``means``, ``coefficients``, ...)."""
    for prefix, group in KEY_GROUPS:
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return group
    return "other"


# ---------------------------------------------------------------------------------------------
# the metadata codec (safetensors metadata is str → str)


def encode_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """Strings as they are, everything else as JSON (integers thus as their digits)."""
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in meta.items()}


def _decode_value(key: str, raw: str, kind: str, where: str) -> Any:
    try:
        if kind == "str":
            return raw
        if kind == "int":
            return int(raw)
        value = json.loads(raw)
    except (ValueError, TypeError):
        raise BundleError(f"{where}: metadata field {key!r} is not a valid {kind} ({raw[:40]!r}); "
                          "the file is corrupt") from None
    if kind == "float" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise BundleError(f"{where}: metadata field {key!r} is not a number ({raw[:40]!r}); the file is corrupt")
    return value


def decode_meta(raw: Mapping[str, str], schema: Mapping[str, str], where: str) -> dict[str, Any]:
    """Decode metadata by ``schema`` (field → ``str``/``int``/``float``/``json``); unknown fields are tried as JSON."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = schema.get(key)
        if kind is None:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = _decode_value(key, value, kind, where)
    return out


def now_iso() -> str:
    """Creation timestamp (UTC, ISO 8601)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _version() -> str:
    from . import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# typed bundle metadata


@dataclass(frozen=True)
class TeacherRef:
    """The teacher a bundle was distilled against."""

    arch: str
    repr_dim: int
    sha256: str | None = None
    path: str | None = None
    image_size: int | None = None
    source: str | None = None


@dataclass(frozen=True)
class BundleMeta:
    """A bundle's metadata, decoded and typed (see docs/bundle-format.md)."""

    method: str
    source: str
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    views: tuple[str, ...]
    teacher: TeacherRef
    budget: int
    storage: dict[str, Any]
    config: dict[str, Any]
    image_space: str = "normalized"
    basis_size: int | None = None  # None: the image side
    counts: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    fit: dict[str, Any] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    ssdd_version: str = ""
    created: str = ""
    checksum: str | None = None  # of the tensor data, set when written (v2)

    def to_strings(self) -> dict[str, str]:
        """The safetensors metadata (``format`` first; ``basis_size`` written as the image side when unset)."""
        values = dataclasses.asdict(self)
        values["teacher"] = dataclasses.asdict(self.teacher)
        for key in ("mean", "std", "views"):
            values[key] = list(values[key])
        values["basis_size"] = self.basis_size or self.image_size
        del values["checksum"]  # computed from the tensors by the writer
        return encode_meta({"format": BUNDLE_FORMAT, **values})

    @classmethod
    def from_strings(cls, raw: Mapping[str, str], where: str) -> BundleMeta:
        """Decode and check types; raise :class:`BundleError` naming the bad field."""
        fmt = raw.get("format")
        if fmt != BUNDLE_FORMAT:
            kind = "an ssdd teacher file" if fmt == TEACHER_FORMAT else "not an ssdd bundle"
            raise BundleError(f"{where}: {kind} (format={fmt!r}); pass a bundle made by `ssdd distill`")
        version = _decode_value("format_version", raw.get("format_version", "0"), "int", where)
        if version > FORMAT_VERSION:
            raise BundleError(f"{where}: bundle format v{version} is newer than this ssdd (v{FORMAT_VERSION}); upgrade ssdd")
        if version < 1:
            raise BundleError(f"{where}: unknown bundle format version {version}")
        missing = [k for k in REQUIRED_METADATA + (V2_METADATA if version >= 2 else ()) if k not in raw]
        if missing:
            raise BundleError(f"{where}: missing metadata {', '.join(missing)}; the file is incomplete or corrupt")
        d = decode_meta(raw, _BUNDLE_SCHEMA, where)
        teacher = d["teacher"]
        if not isinstance(teacher, dict) or not isinstance(teacher.get("arch"), str):
            raise BundleError(f"{where}: metadata field 'teacher' lacks the teacher's arch; the file is corrupt")
        known = {f.name for f in dataclasses.fields(TeacherRef)}
        try:
            meta = cls(
                method=d["method"], source=d["source"], image_size=d["image_size"], channels=d["channels"],
                mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                views=tuple(str(v) for v in d["views"]),
                teacher=TeacherRef(**{k: v for k, v in teacher.items() if k in known}),
                budget=d["budget"], storage=dict(d["storage"]), config=dict(d["config"]),
                image_space=d["image_space"], basis_size=d.get("basis_size"), counts=dict(d.get("counts", {})),
                seed=d.get("seed", 0), fit=dict(d.get("fit", {})), history=list(d.get("history", [])),
                format_version=version, ssdd_version=d["ssdd_version"], created=d["created"],
                checksum=d.get(CHECKSUM_KEY),
            )
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed metadata ({exc}); the file is corrupt") from None
        meta.check_ranges(where)
        return meta

    def check_ranges(self, where: str) -> None:
        """Every value within the range a bundle can hold; raise :class:`BundleError` naming the first that is not."""
        from .views import parse_views

        def bad(field: str, value: Any, rule: str) -> BundleError:
            return BundleError(f"{where}: metadata {field}={value!r} is out of range ({rule}); the file is corrupt")

        if not 1 <= self.image_size <= 4096:
            raise bad("image_size", self.image_size, "1 to 4096")
        if self.channels not in (1, 3):
            raise bad("channels", self.channels, "1 or 3")
        if self.budget < 1:
            raise bad("budget", self.budget, "≥ 1")
        if self.basis_size is not None and not 1 <= self.basis_size <= self.image_size:
            raise bad("basis_size", self.basis_size, f"1 to the image size {self.image_size}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != self.channels or not all(math.isfinite(v) for v in values):
                raise bad(name, list(values), f"{self.channels} finite values, one per channel")
        if not all(v > 0 for v in self.std):
            raise bad("std", list(self.std), "positive")
        if self.image_space not in ("normalized", "raw"):
            raise bad("image_space", self.image_space, "normalized or raw")
        try:
            canonical = parse_views(self.views)
        except ConfigError as exc:
            raise BundleError(f"{where}: metadata views: {exc}; the file is corrupt") from None
        if canonical != self.views:
            raise bad("views", list(self.views), f"identity first, no duplicates, e.g. {list(canonical)}")


REQUIRED_METADATA = ("format", "format_version", "method", "source", "image_size", "channels", "mean", "std",
                     "image_space", "views", "teacher", "budget", "storage", "config", "ssdd_version", "created")
#: no stored value may exceed this magnitude: rebuilding pairs (``μ + C·B``, two small MLP layers) then
#: stays far inside float32 for any rank ssdd writes
MAX_ABS_VALUE = 1e6
#: required from format v2 on (v1 files have none)
V2_METADATA = (CHECKSUM_KEY,)
_BUNDLE_SCHEMA = {
    "format": "str", "format_version": "int", "method": "str", "source": "str", "image_size": "int",
    "channels": "int", "basis_size": "int", "mean": "json", "std": "json", "image_space": "str", "views": "json",
    "teacher": "json", "budget": "int", "storage": "json", "config": "json", "counts": "json", "seed": "int",
    "fit": "json", "history": "json", "ssdd_version": "str", "created": "str", CHECKSUM_KEY: "str",
}


# ---------------------------------------------------------------------------------------------
# bundle


@dataclass
class Bundle:
    """A distilled set as stored: float tensors plus typed metadata."""

    tensors: dict[str, torch.Tensor]
    meta: BundleMeta
    path: Path | None = None

    @property
    def method(self) -> str:
        """Registry key of the method that made it."""
        return self.meta.method

    @property
    def views(self) -> list[str]:
        """Predefined views, identity first."""
        return list(self.meta.views)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return (self.meta.channels, self.meta.image_size, self.meta.image_size)

    @property
    def basis_size(self) -> int:
        """Side of the image bases (the image side for pixel images)."""
        return self.meta.basis_size or self.meta.image_size

    @property
    def has_image_basis(self) -> bool:
        """Whether images are stored as bases and coefficients."""
        return IMAGE_BASIS in self.tensors

    @property
    def has_repr_basis(self) -> bool:
        """Whether targets are stored as bases and coefficients."""
        return REPR_BASIS in self.tensors

    @property
    def num_images(self) -> int:
        """Number of distilled images ``m``."""
        return int(self.tensors[IMAGE_COEFFS if self.has_image_basis else IMAGES].shape[0])

    @property
    def repr_dim(self) -> int:
        """Teacher representation size ``D``."""
        return int(self.tensors[REPR_BASIS if self.has_repr_basis else TARGETS].shape[-1])

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean of the source data."""
        return self.meta.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation std of the source data."""
        return self.meta.std

    def storage(self) -> StorageReport:
        """Storage report computed from the stored tensors (never from metadata)."""
        from .methods.registry import get_method
        from .storage import storage_report

        shapes = {k: tuple(v.shape) for k, v in self.tensors.items() if v.is_floating_point()}
        return storage_report(shapes, image_shape=self.image_shape, label=self.method, num_images=self.num_images,
                              images_only=get_method(self.method).pixel_storage)


def validate_bundle(tensors: Mapping[str, torch.Tensor], meta: BundleMeta, where: str) -> None:
    """Check the method, the required keys and the shapes that must agree; raise :class:`BundleError`."""
    from .methods.registry import get_method

    try:
        get_method(meta.method)
    except ConfigError:
        raise BundleError(f"{where}: unknown method {meta.method!r} in the metadata; written by a newer ssdd?") from None
    has_pix, has_basis = IMAGES in tensors, all(k in tensors for k in IMAGE_BASIS_KEYS)
    if has_pix == has_basis:
        raise BundleError(f"{where}: needs either 'images' or all of {', '.join(IMAGE_BASIS_KEYS)}; the file is incomplete")
    has_t, has_rb = TARGETS in tensors, all(k in tensors for k in REPR_BASIS_KEYS)
    if has_t == has_rb:
        raise BundleError(f"{where}: needs either 'targets' or all of {', '.join(REPR_BASIS_KEYS)}; the file is incomplete")
    c, s = meta.channels, meta.image_size
    if has_pix:
        m = tensors[IMAGES].shape[0]
        if tuple(tensors[IMAGES].shape[1:]) != (c, s, s):
            raise BundleError(f"{where}: 'images' has shape {tuple(tensors[IMAGES].shape)}, expected (m, {c}, {s}, {s})")
    else:
        u, p = tensors[IMAGE_BASIS].shape
        m = tensors[IMAGE_COEFFS].shape[0]
        if tensors[IMAGE_COEFFS].shape[1] != u or tuple(tensors[IMAGE_MEAN].shape) != (p,):
            raise BundleError(f"{where}: image basis/coefficient/mean shapes disagree")
        b = meta.basis_size or s
        if p != c * b * b:
            raise BundleError(f"{where}: image basis width {p} != C·b·b = {c * b * b}")
    if has_t:
        if tensors[TARGETS].shape[0] != m:
            raise BundleError(f"{where}: {tensors[TARGETS].shape[0]} targets for {m} images")
        coef = tensors[TARGETS].shape[1]
    else:
        v, d = tensors[REPR_BASIS].shape
        if tuple(tensors[REPR_COEFFS].shape) != (m, v) or tuple(tensors[REPR_MEAN].shape) != (d,):
            raise BundleError(f"{where}: representation basis/coefficient/mean shapes disagree")
        coef = v
    if not meta.views or meta.views[0] != "identity":
        raise BundleError(f"{where}: view list {list(meta.views)} must start with 'identity'")
    for view in meta.views[1:]:
        net = approx_keys(view)
        stored = view_coeffs_key(view) if has_rb else view_targets_key(view)
        if all(k in tensors for k in net):
            k = tensors[net[0]].shape[0] if tensors[net[0]].dim() == 2 else -1
            want = ((k, coef), (k,), (coef, k), (coef,))
            if k < 1 or any(tuple(tensors[n].shape) != w for n, w in zip(net, want, strict=True)):
                raise BundleError(f"{where}: approximation network for {view!r} has shapes "
                                  f"{[tuple(tensors[n].shape) for n in net]}, expected {list(want)} for width {coef}")
        elif stored in tensors:
            if tuple(tensors[stored].shape) != (m, coef):
                raise BundleError(f"{where}: {stored!r} has shape {tuple(tensors[stored].shape)}, expected ({m}, {coef})")
        else:
            raise BundleError(f"{where}: view {view!r} has neither an approximation network nor stored targets")
    for key, t in tensors.items():
        if str(t.dtype) != "torch.float32":
            raise BundleError(f"{where}: tensor {key!r} has dtype {str(t.dtype).replace('torch.', '')}; bundles store "
                              "float32; the file was not written by ssdd or is corrupt")
        if not t.isfinite().all():
            raise BundleError(f"{where}: tensor {key!r} contains NaN or infinity")
        peak = float(t.abs().max()) if t.numel() else 0.0
        if peak > MAX_ABS_VALUE:
            raise BundleError(f"{where}: tensor {key!r} holds values up to {peak:.3g}, beyond ±{MAX_ABS_VALUE:g}, "
                              "where rebuilding the pairs could overflow; the file is corrupt")


def save_bundle(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: BundleMeta, *, overwrite: bool = False) -> Path:
    """Validate and write a bundle atomically (refuses an existing path unless ``overwrite``)."""
    path = Path(path)
    meta = dataclasses.replace(meta, format_version=FORMAT_VERSION, ssdd_version=_version(), created=now_iso())
    tensors = {k: v.detach().float() for k, v in tensors.items()}
    validate_bundle(tensors, meta, str(path))
    _write(path, tensors, meta.to_strings(), overwrite)
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle.

    Raises:
        BundleError: missing, unreadable, not a bundle, newer format, malformed metadata or inconsistent tensors.
    """
    path = Path(path)
    tensors, raw = _read(path, "bundle")
    meta = BundleMeta.from_strings(raw, str(path))
    validate_bundle(tensors, meta, str(path))
    return Bundle(tensors, meta, path)


# ---------------------------------------------------------------------------------------------
# teacher file

TEACHER_REQUIRED = ("format", "format_version", "arch", "repr_dim", "image_size", "mean", "std", "stem_padding")
_TEACHER_SCHEMA = {
    "format": "str", "format_version": "int", "arch": "str", "repr_dim": "int", "image_size": "int", "mean": "json",
    "std": "json", "stem_padding": "int", "dataset": "str", "origin": "str", "imported_from": "str",
    "config": "json", "steps_done": "int", "train_seconds": "float", "final_loss": "float",
    "probe_accuracy": "float", "probe_target": "str", "probe_steps": "int", "ssdd_version": "str", "created": "str", CHECKSUM_KEY: "str",
}


@dataclass
class TeacherFile:
    """A teacher as stored: backbone state dict (bare keys) and decoded metadata."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None


def save_teacher_file(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *,
                      overwrite: bool = False) -> Path:
    """Write a teacher file atomically."""
    path = Path(path)
    full = {"format": TEACHER_FORMAT, **meta, "format_version": FORMAT_VERSION, "ssdd_version": _version(),
            "created": now_iso()}
    _write(path, state_dict, encode_meta(full), overwrite)
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
    meta = decode_meta(raw, _TEACHER_SCHEMA, str(path))
    required = TEACHER_REQUIRED + ((CHECKSUM_KEY,) if meta.get("format_version", 0) >= 2 else ())
    missing = [k for k in required if k not in raw]
    if missing:
        raise BundleError(f"{path}: teacher metadata lacks {', '.join(missing)}; the file is corrupt")
    if meta["format_version"] > FORMAT_VERSION:
        raise BundleError(f"{path}: teacher format v{meta['format_version']} is newer than this ssdd; upgrade ssdd")
    return TeacherFile(tensors, meta, path)


# ---------------------------------------------------------------------------------------------
# reading and writing (the only safetensors calls of the package)


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
    recorded = meta.get(CHECKSUM_KEY)
    if recorded is not None and recorded != tensor_checksum(tensors):
        raise BundleError(f"{path}: the tensor data does not match its recorded checksum; the file is corrupt "
                          "(changed bytes or a bad copy): re-create or re-copy it")
    return tensors, meta


def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` over every tensor's name, dtype, shape and bytes, in key order."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}\0{str(t.dtype).replace('torch.', '')}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def _write(path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], overwrite: bool) -> None:
    check_output(path, overwrite)
    with output_errors(path):
        save_tensors(path, tensors, meta)


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str] | None = None) -> None:
    """Write tensors with string metadata atomically, adding the ``checksum`` that every read verifies."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {**(meta or {}), CHECKSUM_KEY: tensor_checksum(clean)}
    with atomic_file(path) as tmp:
        try:
            save_file(clean, str(tmp), metadata=meta)
        except SafetensorError as exc:  # the writer's I/O errors (a full disk) are not OSErrors
            raise OSError(f"{str(exc).splitlines()[0] if str(exc) else 'write failed'}") from exc


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read plain tensors and their metadata.

    Raises:
        BundleError: missing or unreadable file.
    """
    return _read(Path(path), "tensor file")
