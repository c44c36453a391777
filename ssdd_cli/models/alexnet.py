"""AlexNet for small images (method.md §7.6), the variant dataset-distillation papers evaluate.

Five convolutions with BatchNorm and ReLU: 5×5 (→128) and 5×5 (→192), each followed by a 2×2 max-pool,
then 3×3 convolutions →256 →192 →192 and a last max-pool. Flat features ``192·(H/8)²``: 3072 at
32 px, 12288 at 64 px.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import Backbone, register_model


def _block(cin: int, cout: int, kernel: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return layers + [nn.MaxPool2d(2)] if pool else layers


class SmallAlexNet(Backbone):
    """AlexNet's five convolutions at CIFAR scale, with BatchNorm."""

    def __init__(self, image_size: int, out_dim: int | None, in_channels: int = 3):
        super().__init__()
        if image_size < 8:
            raise ValueError(f"image size {image_size} too small for AlexNet's three max-pools (≥ 8 px)")
        self.body = nn.Sequential(
            *_block(in_channels, 128, 5, True), *_block(128, 192, 5, True),
            *_block(192, 256, 3, False), *_block(256, 192, 3, False), *_block(192, 192, 3, True),
        )
        side = image_size // 8
        self.feature_dim = 192 * side * side
        self.repr_dim = 192
        self.fc = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)  # (B, 192, H/8, W/8)


@register_model("alexnet", "AlexNet for small images (5 convs with BN); 192·(H/8)² features (3072 at 32 px)",
                params=1_843_392)
def alexnet(image_size: int = 32, out_dim: int | None = None, in_channels: int = 3) -> SmallAlexNet:
    """Small-image AlexNet."""
    return SmallAlexNet(image_size, out_dim, in_channels)
