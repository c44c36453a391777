"""Inference with BatchNorm folded into the preceding convolution (eval mode only).

In eval mode ``BN(conv(x)) = conv'(x)`` with ``w' = w·γ/σ`` and ``b' = (b − μ)·γ/σ + β``
(``σ = sqrt(running_var + ε)``): the same function, one pass over the activations fewer per block.
The teacher is frozen, so its folded copy is built once (:func:`folded_copy`); a pool model changes at
every online step, so its real-batch features fold on the fly from the current weights
(:func:`embed_folded`, ConvNets only; any other model falls back to its own ``embed``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from .convnet import ConvNet


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``conv`` followed by ``bn`` in eval mode, as one convolution."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)  # type: ignore[arg-type]
    return conv.weight * scale.view(-1, 1, 1, 1), (bias - bn.running_mean) * scale + bn.bias  # type: ignore[operator]


class _Represent(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model.represent(x)  # type: ignore[operator]


def folded_copy(model: nn.Module) -> nn.Module:
    """A module computing ``model.represent`` (eval mode) with every conv→BN pair folded; ``model`` is untouched.

    Models that cannot be traced are returned as an eval-mode copy computing the same thing unfolded.
    """
    wrapped = _Represent(copy.deepcopy(model).eval())
    try:
        with torch.no_grad():
            out = fuse(wrapped, inplace=True)
    except (fx.proxy.TraceError, NotImplementedError, TypeError):  # pragma: no cover - every registry model traces
        return wrapped
    return out.to(memory_format=torch.channels_last)


def embed_folded(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.embed(x)`` in eval mode, BatchNorm folded into the convolutions for ConvNets (no gradients needed)."""
    if not isinstance(model, ConvNet) or model.training:
        return model.embed(x)  # type: ignore[operator]
    layers = list(model.body)
    for i in range(0, len(layers), 4):
        conv, bn, _, pool = layers[i : i + 4]
        weight, bias = fold(conv, bn)  # type: ignore[arg-type]
        x = F.relu(F.conv2d(x, weight, bias, padding=conv.padding), inplace=True)  # type: ignore[arg-type]
        x = F.avg_pool2d(x, pool.kernel_size)  # type: ignore[arg-type]
    return x.flatten(1)
