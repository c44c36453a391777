"""Reading and writing teacher files (the format itself lives in :mod:`ssdd_cli.bundle`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..bundle import load_teacher_file, save_teacher_file
from ..errors import CheckpointError
from ..models import backbone_state_dict
from ..paths import sha256_file
from .model import Teacher, build_backbone


def load_teacher(path: str | Path, device: torch.device | None = None) -> Teacher:
    """Load a teacher file written by ``ssdd teacher`` (or by an import), onto ``device`` when given."""
    tf = load_teacher_file(path)
    meta = tf.meta
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


def save_teacher(teacher: Teacher, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a teacher file (bare backbone keys, KRR-ST layout) and record its hash."""
    stem = getattr(teacher.model, "stem_padding", -1)
    meta = {**teacher.meta, "arch": teacher.arch, "repr_dim": teacher.repr_dim, "image_size": teacher.image_size,
            "mean": list(teacher.mean), "std": list(teacher.std), "stem_padding": stem}
    path = save_teacher_file(path, backbone_state_dict(teacher.model), meta, overwrite=overwrite)
    teacher.sha256 = sha256_file(path)
    teacher.path = Path(path).resolve()
    return path
