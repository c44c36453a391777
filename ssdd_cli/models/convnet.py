"""ConvNets of KRR-ST (method.md §5.4): blocks of Conv3×3(bias)-BatchNorm-ReLU-AvgPool2.

``convnet3`` = widths 128-256-512 (the 32-px distillation/evaluation net, 8192 flat features);
``convnet4`` = 64-128-256-512 (the 64-px net). Narrow variants exist for CPU-sized runs.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import Backbone, register_model


class ConvNet(Backbone):
    """A stack of conv blocks with widening channels and a linear head."""

    def __init__(self, widths: tuple[int, ...], image_size: int, out_dim: int | None, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(prev, width, kernel_size=3, stride=1, padding=1, bias=True),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
            ]
            prev = width
        self.body = nn.Sequential(*layers)
        side = image_size // (2 ** len(widths))
        if side < 1:
            raise ValueError(f"image size {image_size} too small for {len(widths)} pooling blocks")
        self.widths = widths
        self.feature_dim = prev * side * side
        self.repr_dim = prev
        self.fc = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)


def _convnet(widths: tuple[int, ...]):  # type: ignore[no-untyped-def]
    def build(image_size: int, out_dim: int | None, in_channels: int = 3) -> ConvNet:
        return ConvNet(widths, image_size, out_dim, in_channels)

    return build


_VARIANTS = {
    "convnet3": ((128, 256, 512), "3 blocks 128-256-512 (KRR-ST/Boost 32-px net, 8192 features)"),
    "convnet4": ((64, 128, 256, 512), "4 blocks 64-128-256-512 (KRR-ST 64-px net)"),
    "convnet3_m": ((64, 128, 256), "3 blocks 64-128-256 (half width, CPU-sized)"),
    "convnet3_s": ((32, 64, 128), "3 blocks 32-64-128 (quarter width, the CPU preset's net)"),
    "convnet4_s": ((32, 64, 128, 256), "4 blocks 32-64-128-256 (the CPU preset's teacher encoder)"),
    "convnet2_xs": ((16, 32), "2 blocks 16-32 (tiny; tests)"),
}

def _convnet_params(widths: tuple[int, ...], in_channels: int = 3) -> int:
    """Conv weights and biases plus BatchNorm scale and shift per block (no head)."""
    chans = (in_channels, *widths)
    return sum(cin * cout * 9 + cout + 2 * cout for cin, cout in zip(chans, chans[1:], strict=False))


for _name, (_widths, _desc) in _VARIANTS.items():
    register_model(_name, _desc, params=_convnet_params(_widths))(_convnet(_widths))
