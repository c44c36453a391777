"""VGG-11 with BatchNorm for small images (method.md §7.6), as KRR-ST's cross-architecture runs use it.

Layout ``64,M,128,M,256,256,M,512,512,M,512,512,M``: each number a 3×3 convolution (padding 1) with
BatchNorm and ReLU, each ``M`` a 2×2 max-pool. The flat features are ``512·(H/32)²``: 512 at 32 px,
2048 at 64 px.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import Backbone, register_model

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(Backbone):
    """Plain convolution stack with max-pooling and a linear head on the flat features."""

    def __init__(self, layout: tuple[int | str, ...], image_size: int, out_dim: int | None, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        prev, pools = in_channels, 0
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                pools += 1
                continue
            width = int(item)
            layers += [nn.Conv2d(prev, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            prev = width
        side = image_size // 2**pools
        if side < 1:
            raise ValueError(f"image size {image_size} too small for {pools} max-pools (≥ {2**pools} px)")
        self.body = nn.Sequential(*layers)
        self.feature_dim = prev * side * side
        self.repr_dim = prev
        self.fc = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)  # (B, 512, H/32, W/32)


@register_model("vgg11", "VGG-11 with BatchNorm, max-pools; 512·(H/32)² features (512 at 32 px)", params=9_225_984)
def vgg11(image_size: int = 32, out_dim: int | None = None, in_channels: int = 3) -> VGG:
    """VGG-11 (BN) for 32/64-px images."""
    return VGG(VGG11, image_size, out_dim, in_channels)
