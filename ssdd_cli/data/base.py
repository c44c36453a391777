"""The in-memory dataset every command works on: uint8 image tensors, labels and statistics."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class ImageDataset:
    """A labelled image dataset held as uint8 tensors (labels are used only for evaluation).

    Attributes:
        name: canonical name (``cifar100``, ``shapes``, ``folder:<path>``, ...).
        train_images: ``(n_train, C, H, W)`` uint8.
        train_labels: ``(n_train,)`` int64.
        test_images: ``(n_test, C, H, W)`` uint8.
        test_labels: ``(n_test,)`` int64.
        classes: class names, index = label.
        mean: per-channel mean of the training images in [0, 1] (the normalization that travels
            with every artifact).
        std: per-channel std of the training images in [0, 1].
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        """Side length of the (square) images."""
        return int(self.train_images.shape[-1])

    @property
    def num_channels(self) -> int:
        """Number of image channels (3 for RGB)."""
        return int(self.train_images.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def fingerprint(self) -> str:
        """SHA-256 of the training images' bytes and shape (computed once), the key of derived caches.

        Two folders with the same name, or a folder edited in place, never share an entry.
        """
        if "_fingerprint" not in self.__dict__:
            h = hashlib.sha256(repr((tuple(self.train_images.shape), str(self.train_images.dtype))).encode())
            h.update(self.train_images.contiguous().numpy().tobytes())
            self.__dict__["_fingerprint"] = h.hexdigest()
        return self.__dict__["_fingerprint"]
