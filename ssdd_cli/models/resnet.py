"""ResNets with the CIFAR stem used by the KRR-ST/solo-learn teachers (method.md §4.2).

torchvision's ResNet with ``conv1 = Conv2d(3, 64, 3, stride 1, padding 2)`` (padding **2**, as the
published teacher checkpoints expect), no max-pool, and ``fc`` as the optional head. State-dict
keys are torchvision's bare names, so KRR-ST teacher checkpoints load directly.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from .registry import Backbone, register_model

STEM_PADDING = 2


class CifarResNet(ResNet, Backbone):  # type: ignore[misc]
    """torchvision ResNet (BasicBlock) with the small-image stem."""

    def __init__(self, layers: list[int], out_dim: int | None, in_channels: int = 3, stem_padding: int = STEM_PADDING):
        ResNet.__init__(self, BasicBlock, layers, num_classes=1, zero_init_residual=True)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=stem_padding, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        self.feature_dim = 512
        self.repr_dim = 512
        self.stem_padding = stem_padding
        self.fc = nn.Linear(512, out_dim) if out_dim else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.represent(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(self.represent(x))


@register_model("resnet18", "ResNet-18, CIFAR stem (3×3, padding 2, no max-pool), 512-d", params=11_168_832)
def resnet18(image_size: int = 32, out_dim: int | None = None, in_channels: int = 3) -> CifarResNet:
    """ResNet-18 with the CIFAR stem (the KRR-ST / Boost teacher architecture)."""
    return CifarResNet([2, 2, 2, 2], out_dim, in_channels)


@register_model("resnet10", "ResNet-10, CIFAR stem, 512-d", params=4_898_112)
def resnet10(image_size: int = 32, out_dim: int | None = None, in_channels: int = 3) -> CifarResNet:
    """ResNet-10 ([1,1,1,1] BasicBlocks) with the CIFAR stem."""
    return CifarResNet([1, 1, 1, 1], out_dim, in_channels)
