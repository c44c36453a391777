"""Reading and writing teacher files (the format itself lives in :mod:`ssdd_cli.bundle`)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..bundle import load_teacher_file, save_teacher_file
from ..errors import BundleError, CheckpointError, ConfigError
from ..models import backbone_state_dict, check_model_name
from ..paths import sha256_file
from .model import Teacher, build_backbone


def load_teacher(path: str | Path, device: torch.device | None = None) -> Teacher:
    """Load a teacher file written by ``ssdd teacher`` (or by an import), onto ``device`` when given."""
    tf = load_teacher_file(path)
    meta = tf.meta
    _check_meta(meta, path)
    for key, t in tf.state_dict.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BundleError(f"{path}: teacher weight {key!r} contains NaN or infinity; the teacher diverged or the "
                              "file is corrupt: train or import it again")
    model = build_backbone(meta["arch"], meta["image_size"], meta["stem_padding"] if meta["stem_padding"] != -1 else None)
    try:
        model.load_state_dict(tf.state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match architecture {meta['arch']!r}: {str(exc).splitlines()[0]}") from exc
    teacher = Teacher(model, arch=meta["arch"], image_size=meta["image_size"], mean=tuple(meta["mean"]),
                      std=tuple(meta["std"]), meta=meta, sha256=sha256_file(path), path=Path(path).resolve())
    if device is not None:
        teacher.to(device)
    return teacher


def _check_meta(meta: dict, path: str | Path) -> None:  # type: ignore[type-arg]
    """Every value a teacher needs, in range (raise :class:`BundleError` naming the first that is not)."""
    try:
        check_model_name(str(meta["arch"]))
    except ConfigError as exc:
        raise BundleError(f"{path}: {exc}; the teacher file is corrupt or from a newer ssdd") from None
    if not 1 <= meta["image_size"] <= 4096 or meta["repr_dim"] < 1:
        raise BundleError(f"{path}: teacher image_size={meta['image_size']} / repr_dim={meta['repr_dim']} out of range; "
                          "the file is corrupt")
    stats = (meta["mean"], meta["std"])
    if not all(isinstance(v, list) and len(v) in (1, 3) and all(isinstance(x, (int, float)) and math.isfinite(x)
                                                                 for x in v) for v in stats) \
            or len(meta["mean"]) != len(meta["std"]) or not all(x > 0 for x in meta["std"]):
        raise BundleError(f"{path}: teacher normalisation mean={meta['mean']} std={meta['std']} is invalid (one finite "
                          "value per channel, positive std); the file is corrupt")


def save_teacher(teacher: Teacher, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a teacher file (bare backbone keys, KRR-ST layout) and record its hash."""
    stem = getattr(teacher.model, "stem_padding", -1)
    meta = {**teacher.meta, "arch": teacher.arch, "repr_dim": teacher.repr_dim, "image_size": teacher.image_size,
            "mean": list(teacher.mean), "std": list(teacher.std), "stem_padding": stem}
    path = save_teacher_file(path, backbone_state_dict(teacher.model), meta, overwrite=overwrite)
    teacher.sha256 = sha256_file(path)
    teacher.path = Path(path).resolve()
    return path
