"""MobileNetV2, CIFAR variant (method.md §7.6): stride-1 stem and second stage, expansion 2.

Inverted residual blocks ``(expansion t, width c, blocks n, stride s)`` =
(1,16,1,1), (2,24,2,1), (2,32,3,2), (2,64,4,2), (2,96,3,1), (2,160,3,2), (2,320,1,1); each block is
1×1 expand (when t > 1) → 3×3 depthwise (stride s) → 1×1 project, BatchNorm after each, ReLU6 after
the first two. Stride-1 blocks add a shortcut (a 1×1 projection when the widths differ). A 1×1
convolution to 1280 channels, BatchNorm, ReLU and global average pooling give 1280 features.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import Backbone, register_model

STAGES = ((1, 16, 1, 1), (2, 24, 2, 1), (2, 32, 3, 2), (2, 64, 4, 2), (2, 96, 3, 1), (2, 160, 3, 2), (2, 320, 1, 1))


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class InvertedResidual(nn.Module):
    """Expand, depthwise, project; a shortcut when the stride is 1."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*_conv_bn(cin, hidden), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True), *_conv_bn(hidden, cout)]
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        if stride == 1:
            self.shortcut = nn.Identity() if cin == cout else nn.Sequential(*_conv_bn(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.body(x)
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2(Backbone):
    """MobileNetV2 for 32/64-px images; features are the pooled 1280 channels."""

    def __init__(self, out_dim: int | None, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(in_channels, 32, 3), nn.ReLU6(inplace=True)]
        prev = 32
        for t, c, n, s in STAGES:
            for i in range(n):
                layers.append(InvertedResidual(prev, c, t, s if i == 0 else 1))
                prev = c
        layers += [*_conv_bn(prev, 1280), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.feature_dim = self.repr_dim = 1280
        self.fc = nn.Linear(1280, out_dim) if out_dim else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)  # (B, 1280, H/8, W/8)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.represent(x)


@register_model("mobilenetv2", "MobileNetV2, CIFAR variant (stride-1 stem, expansion 2); 1280 pooled features",
                params=1_078_416)
def mobilenetv2(image_size: int = 32, out_dim: int | None = None, in_channels: int = 3) -> MobileNetV2:
    """MobileNetV2 (CIFAR variant, expansion 2)."""
    return MobileNetV2(out_dim, in_channels)
