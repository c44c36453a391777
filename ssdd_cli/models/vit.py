"""A small Vision Transformer (method.md §7.6, Boost's cross-architecture table).

Patches of 4 px at 32 px and 8 px at 64 px (64 tokens either way; ``image_size / 8`` in general),
width 256, depth 6, 8 heads, MLP ratio 2, pre-norm blocks, a CLS token and learned positional
embeddings; the features are the final (layer-normed) CLS token, 256-d.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import Backbone, register_model


class ViT(Backbone):
    """Pre-norm transformer over non-overlapping patches; ``embed`` and ``represent`` are the CLS token."""

    def __init__(self, image_size: int, out_dim: int | None, in_channels: int = 3, *, dim: int = 256,
                 depth: int = 6, heads: int = 8, mlp_ratio: int = 2, grid: int = 8):
        super().__init__()
        if image_size % grid:
            raise ValueError(f"image size {image_size} must be a multiple of {grid} (the patch grid is {grid}×{grid})")
        patch = image_size // grid
        self.patchify = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        def block() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(dim, heads, dim * mlp_ratio, dropout=0.0, activation="gelu",
                                              batch_first=True, norm_first=True)

        self.blocks = nn.TransformerEncoder(block(), depth, enable_nested_tensor=False)
        # TransformerEncoder deep-copies one layer: give every block its own initialisation
        self.blocks.layers = nn.ModuleList(block() for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.feature_dim = self.repr_dim = dim
        self.fc = nn.Linear(dim, out_dim) if out_dim else nn.Identity()

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        tokens = self.patchify(x).flatten(2).transpose(1, 2)  # (B, grid², dim)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.norm(self.blocks(tokens)[:, 0])  # (B, dim)

    def represent(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.embed(x)


@register_model("vit", "ViT-small: 8×8 patches grid (4 px at 32 px), width 256, depth 6, 8 heads, CLS 256-d",
                params={32: 3_192_576, 64: 3_229_440})
def vit(image_size: int = 32, out_dim: int | None = None, in_channels: int = 3) -> ViT:
    """Small ViT for 32/64-px images."""
    return ViT(image_size, out_dim, in_channels)
