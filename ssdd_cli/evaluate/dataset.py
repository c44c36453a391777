"""A distilled set as a ``torch.utils.data.Dataset`` of (image, target representation) pairs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..bundle import Bundle, load_bundle


class BundleDataset(Dataset):
    """The (image, target) pairs a bundle rebuilds, for pretraining a model in one's own loop.

    Pairs are rebuilt once, when the dataset is made (on ``device``), and held as two tensors;
    indexing returns views into them, view-major (all images of the first view, then the next).
    Images are in the bundle's image space (normalised with :attr:`mean`/:attr:`std` unless the
    bundle says ``raw``), targets are the ``D``-dimensional representations to regress (MSE).

    Example::

        from torch.utils.data import DataLoader
        from ssdd_cli import BundleDataset

        data = BundleDataset("set.safetensors")
        for images, targets in DataLoader(data, batch_size=256, shuffle=True):
            loss = ((model(images) - targets) ** 2).mean()

    Args:
        bundle: a bundle path or a loaded :class:`~ssdd_cli.bundle.Bundle` (checksum verified on load).
        views: the views to include (a list or comma-separated string; default: all of the bundle's).
        device: where to rebuild and keep the pairs (default: CPU).
    """

    def __init__(self, bundle: str | Path | Bundle, *, views: str | list[str] | None = None,
                 device: torch.device | str | None = None) -> None:
        from ..expand import expand_pairs, select_views

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.views = select_views(self.bundle, views)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        self.images, self.targets = expand_pairs(self.bundle, views=list(self.views), device=dev)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean the images are normalised with."""
        return tuple(self.bundle.mean)

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation the images are normalised with."""
        return tuple(self.bundle.std)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All pairs at once: ``images (n, C, H, W)`` and ``targets (n, D)``."""
        return self.images, self.targets

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]

    def __repr__(self) -> str:
        return (f"BundleDataset({self.bundle.method}, N={self.bundle.meta.budget}, {len(self)} pairs, "
                f"views={','.join(self.views)}, target dim {self.targets.shape[1]})")
