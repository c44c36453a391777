"""The runtime teacher: a frozen encoder ``g`` with the normalisation of its source data.

Its representation is the globally average-pooled output of the last stage (method.md §11),
computed in eval mode from *raw* images in [0, 1] (normalisation is applied inside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import augment
from ..device import autocast
from ..models import create_model
from ..models.fold import folded_copy
from ..models.registry import Backbone
from ..reporting import ProgressReporter


def build_backbone(arch: str, image_size: int, stem_padding: int | None = None) -> Backbone:
    """A headless backbone; ``stem_padding`` overrides a ResNet's stem padding (imported checkpoints)."""
    model = create_model(arch, image_size=image_size, out_dim=None)
    if stem_padding is not None and hasattr(model, "conv1") and model.conv1.padding != (stem_padding, stem_padding):
        model.conv1.padding = (stem_padding, stem_padding)
        model.stem_padding = stem_padding  # type: ignore[attr-defined]
    return model


class Teacher:
    """A frozen encoder ``g`` with its input normalisation."""

    def __init__(self, model: Backbone, *, arch: str, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 meta: dict[str, Any] | None = None, sha256: str | None = None, path: Path | None = None) -> None:
        # channels_last: measured 2.4x faster for the CPU-preset encoder in fp32 and bf16 (oneDNN)
        self.model = model.eval().to(memory_format=torch.channels_last)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.arch = arch
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.meta = meta or {}
        self.sha256 = sha256
        self.path = path
        self._folded: torch.nn.Module | None = None  # BatchNorm folded into the convs, built on first use

    @property
    def repr_dim(self) -> int:
        """Representation size ``D``."""
        return int(self.model.repr_dim)

    @property
    def device(self) -> torch.device:
        """Where the teacher's weights live."""
        return next(self.model.parameters()).device

    def to(self, device: torch.device) -> Teacher:
        """Move the teacher to ``device`` (in place) and return it."""
        self.model.to(device)
        self._folded = None
        return self

    @torch.no_grad()
    def represent_normalized(self, x: torch.Tensor, amp: bool | None = False) -> torch.Tensor:
        """Representations ``(B, D)`` float32 of already-normalised images (no gradients)."""
        return self.differentiable(x, amp)

    def differentiable(self, x: torch.Tensor, amp: bool | None = False) -> torch.Tensor:
        """:meth:`represent_normalized` with gradients to the images ``x`` (the teacher's weights stay frozen).

        Computed by a copy of the encoder with each BatchNorm folded into its convolution (the same
        function up to float rounding, one pass over the activations fewer per block), built on first use:
        the teacher is frozen, so its weights must not change afterwards (``to`` rebuilds it).
        """
        if self._folded is None:
            self._folded = folded_copy(self.model).requires_grad_(False)
        with autocast(x.device, amp):
            return self._folded(x.contiguous(memory_format=torch.channels_last)).float()

    @torch.no_grad()
    def represent(self, images: torch.Tensor, *, batch_size: int = 1024, amp: bool | None = False,
                  reporter: ProgressReporter | None = None) -> torch.Tensor:
        """Representations of raw images (uint8 ``[0,255]`` or float ``[0,1]``), in batches."""
        dev = self.device
        out = []
        if reporter:
            reporter.start("teacher representations", images.shape[0])
        for i in range(0, images.shape[0], batch_size):
            chunk = images[i : i + batch_size].to(dev)
            chunk = augment.to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()
            out.append(self.represent_normalized(augment.normalize(chunk, self.mean, self.std), amp))
            if reporter:
                reporter.advance(chunk.shape[0])
        if reporter:
            reporter.stop()
        return torch.cat(out) if out else torch.empty(0, self.repr_dim)

    def describe(self) -> dict[str, Any]:
        """Identity recorded in every bundle: architecture, size, hash, path."""
        return {"arch": self.arch, "repr_dim": self.repr_dim, "sha256": self.sha256,
                "path": str(self.path) if self.path else None, "image_size": self.image_size,
                "source": self.meta.get("dataset")}
