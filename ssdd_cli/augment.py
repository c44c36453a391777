"""Batched, generator-driven image augmentations on tensors (no PIL, no global RNG).

Two families live here:

* random augmentations for training (the real batch of the outer loop: crop with zero padding and
  horizontal flip; the Barlow Twins views: resized crop, colour jitter, grayscale, solarize), all
  vectorised over the batch and drawing from an explicit ``torch.Generator``;
* the *predefined*, deterministic and differentiable views of Boost (method.md §6.3):
  ``identity``, ``rot90``, ``rot180``, ``rot270``, ``hflip`` and combinations such as
  ``hflip+rot90`` (applied left to right).

Images are float tensors ``(B, C, H, W)``; random ops expect raw pixels in [0, 1]. The Barlow
Twins ops accept ``rows=(start, total)``: ``x`` is rows ``start…`` of a batch of ``total``, and each
random parameter is drawn for the whole batch and sliced, so a batch split over processes is
augmented exactly as it would be in one piece.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .views import DEFAULT_VIEWS, ROTATIONS, parse_views  # noqa: F401  (view names are re-exported here)

# ----------------------------------------------------------------------------------------------
# normalisation


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * s + m


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` → float32 ``[0, 1]``."""
    return images.float().div_(255.0)


# ----------------------------------------------------------------------------------------------
# random training augmentations


Rows = tuple[int, int]  # (first row of x, size of the whole batch the draws are made for)


def _rand(x: torch.Tensor, gen: torch.Generator, rows: Rows | None = None) -> torch.Tensor:
    """One uniform [0, 1) number per image of ``x`` (drawn for the whole batch when ``rows`` is given)."""
    if rows is None:
        return torch.rand(x.shape[0], generator=gen, device=x.device)
    start, total = rows
    return torch.rand(total, generator=gen, device=x.device)[start: start + x.shape[0]]


def _uniform(x: torch.Tensor, lo: float, hi: float, gen: torch.Generator, rows: Rows | None = None) -> torch.Tensor:
    return _rand(x, gen, rows) * (hi - lo) + lo


def random_flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5, rows: Rows | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability ``p``."""
    mask = _rand(x, gen, rows) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, gen: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop of the original size from the zero-padded image (per-sample offsets)."""
    if padding <= 0:
        return x
    b = x.shape[0]
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    return crop_at(x, oy, ox, padding)


def crop_at(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Crop of the original size from the zero-padded image at per-sample offsets ``oy``, ``ox`` in ``[0, 2·padding]``."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (oy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
    cols = (ox[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def crop_flip(x: torch.Tensor, gen: torch.Generator, padding: int = 4) -> torch.Tensor:
    """KRR-ST's real-batch augmentation: random crop with zero padding, then flip p=0.5."""
    return crop_flip_at(x, crop_flip_params(x.shape[0], gen, padding, device=x.device), padding)


def crop_flip_params(n: int, gen: torch.Generator, padding: int = 4,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n, 3)`` int64 parameters ``(oy, ox, flip)`` of :func:`crop_flip` (drawn once for the teacher cache's views)."""
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=device)
    flip = (torch.rand(n, generator=gen, device=device) < 0.5).long()
    return torch.stack([oy, ox, flip], 1)


def crop_flip_at(x: torch.Tensor, params: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """:func:`crop_flip` with given per-image parameters ``(B, 3)`` from :func:`crop_flip_params`."""
    out = crop_at(x, params[:, 0], params[:, 1], padding)
    return torch.where(params[:, 2].bool().view(-1, 1, 1, 1), out.flip(-1), out)


def random_resized_crop(
    x: torch.Tensor,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    rows: Rows | None = None,
) -> torch.Tensor:
    """RandomResizedCrop to the input size, by one batched ``grid_sample`` (bilinear)."""
    b, _, h, w = x.shape
    dev = x.device
    area = _uniform(x, *scale, gen, rows)
    log_r = _uniform(x, math.log(ratio[0]), math.log(ratio[1]), gen, rows)
    aspect = torch.exp(log_r)
    cw = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width as a fraction of the image
    ch = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (_rand(x, gen, rows) * 2 - 1) * (1 - cw)  # crop centre in [-1, 1]
    cy = (_rand(x, gen, rows) * 2 - 1) * (1 - ch)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = cw
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


_GRAY = (0.299, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    wts = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * wts).sum(1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * a + (1 - factor.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def _hue_rotate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    # Hue shift as a rotation of the chroma plane in YIQ space: a smooth, batched stand-in for
    # the HSV round trip (same effect on hue, no branch per pixel).
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype
    )
    from_yiq = torch.linalg.inv(to_yiq)
    angle = shift * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    mat = from_yiq @ rot @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", mat, x).clamp(0, 1)


def color_jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
    rows: Rows | None = None,
) -> torch.Tensor:
    """Colour jitter applied to each image with probability ``p`` (fixed order b, c, s, h)."""
    apply = (_rand(x, gen, rows) < p).view(-1, 1, 1, 1)
    out = x
    if brightness:
        out = (out * _uniform(x, 1 - brightness, 1 + brightness, gen, rows).view(-1, 1, 1, 1)).clamp(0, 1)
    if contrast:
        mean = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
        out = _blend(out, mean.expand_as(out), _uniform(x, 1 - contrast, 1 + contrast, gen, rows))
    if saturation:
        out = _blend(out, _gray(out).expand_as(out), _uniform(x, 1 - saturation, 1 + saturation, gen, rows))
    if hue:
        out = _hue_rotate(out, _uniform(x, -hue, hue, gen, rows))
    return torch.where(apply, out, x)


def random_grayscale(x: torch.Tensor, gen: torch.Generator, p: float = 0.2, rows: Rows | None = None) -> torch.Tensor:
    """Replace each image by its luma (3 channels) with probability ``p``."""
    mask = (_rand(x, gen, rows) < p).view(-1, 1, 1, 1)
    return torch.where(mask, _gray(x).expand_as(x), x)


def random_solarize(x: torch.Tensor, gen: torch.Generator, p: float = 0.2, threshold: float = 0.5,
                    rows: Rows | None = None) -> torch.Tensor:
    """Invert pixels above ``threshold`` with probability ``p`` per image."""
    mask = (_rand(x, gen, rows) < p).view(-1, 1, 1, 1)
    return torch.where(mask & (x >= threshold), 1 - x, x)


def barlow_twins_view(x: torch.Tensor, gen: torch.Generator, solarize_p: float = 0.0,
                      rows: Rows | None = None) -> torch.Tensor:
    """One Barlow Twins view (method.md §4.3): resized crop, jitter, grayscale, solarize, flip.

    With ``rows=(start, total)``, ``x`` is part of a larger batch and gets that batch's draws.
    """
    x = random_resized_crop(x, gen, rows=rows)
    x = color_jitter(x, gen, rows=rows)
    x = random_grayscale(x, gen, rows=rows)
    if solarize_p > 0:
        x = random_solarize(x, gen, solarize_p, rows=rows)
    return random_flip(x, gen, rows=rows)


# ----------------------------------------------------------------------------------------------
# predefined (deterministic, differentiable) views of Boost

def apply_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """Apply a predefined view to ``(B, C, H, W)`` images (exact: no interpolation)."""
    if view == "identity":
        return x
    for part in view.split("+"):
        if part == "hflip":
            x = x.flip(-1)
        else:
            x = torch.rot90(x, ROTATIONS[part], dims=(-2, -1))
    return x
