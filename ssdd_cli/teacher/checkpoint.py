"""Import of external teacher checkpoints (method.md §4.5): KRR-ST state dicts and solo-learn checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..bundle import load_tensors
from ..errors import BundleError, CheckpointError
from .model import Teacher, build_backbone


def import_checkpoint(
    path: str | Path,
    *,
    arch: str = "resnet18",
    image_size: int = 32,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    stem_padding: int = 2,
    dataset_name: str = "",
) -> Teacher:
    """Convert a KRR-ST teacher (bare state dict) or a solo-learn checkpoint into a :class:`Teacher`.

    KRR-ST ``.pt``: torchvision keys, stray ``fc.*`` dropped. solo-learn ``.ckpt``: the
    ``state_dict`` entry, keys under ``backbone.`` (or the old ``encoder.``) kept and stripped,
    everything else ignored; every backbone parameter must be filled. Nothing is unpickled beyond
    tensors (``weights_only=True``).

    Raises:
        CheckpointError: unreadable file, no backbone keys, or keys that do not fit ``arch``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; check the path")
    try:
        if path.suffix == ".safetensors":
            raw: Any = load_tensors(path)[0]
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except (BundleError, Exception) as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}); expected a KRR-ST .pt or a solo-learn .ckpt") from exc
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors; expected a KRR-ST .pt or a solo-learn .ckpt")
    origin = "krr-st"
    for prefix in ("backbone.", "encoder.", "module."):
        if any(k.startswith(prefix) for k in raw):
            raw = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
            origin = "solo-learn" if prefix != "module." else "krr-st"
            break
    state = {k: v for k, v in raw.items() if not k.startswith("fc.")}
    model = build_backbone(arch, image_size, stem_padding)
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        detail = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {unexpected[:3]}" if unexpected else "")
        raise CheckpointError(f"{path}: keys do not fit --arch {arch} ({detail.strip()}); check --arch")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: tensor shapes do not fit --arch {arch}; check --arch") from exc
    meta = {"dataset": dataset_name, "origin": f"import:{origin}", "imported_from": path.name}
    return Teacher(model, arch=arch, image_size=image_size, mean=mean, std=std, meta=meta)
