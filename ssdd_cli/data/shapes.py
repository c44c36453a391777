"""``shapes``: a procedurally generated, labelled RGB dataset for tests, demos and smoke runs.

Every image shows one foreground pattern (a shape or a texture patch) drawn with a random
position, scale, rotation and colour pair on a background with a soft illumination gradient and
a little Gaussian noise. Rendering is vectorized: each class is a signed-distance or periodic
function of batched coordinate grids, so thousands of images take a fraction of a second on CPU.
"""

from __future__ import annotations

import logging
import math

import torch

from ssdd_cli.data.base import ImageDataset
from ssdd_cli.data.stats import channel_stats
from ssdd_cli.errors import ConfigError
from ssdd_cli.rng import derive_seed, make_generator

log = logging.getLogger(__name__)

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "horizontal_bars",
    "vertical_bars",
    "diagonal_stripes",
    "checkerboard",
    "dot_grid",
)

# Rotation range (radians, symmetric) per class. Bars and stripes stay nearly axis-aligned so
# that "horizontal", "vertical" and "diagonal" remain distinct classes.
_MAX_ANGLE: dict[str, float] = {
    "circle": 0.0,
    "square": math.pi / 4,
    "triangle": math.pi,
    "cross": math.pi / 4,
    "ring": 0.0,
    "horizontal_bars": 0.2,
    "vertical_bars": 0.2,
    "diagonal_stripes": 0.2,
    "checkerboard": math.pi / 4,
    "dot_grid": math.pi / 4,
}

_CHUNK = 2048  # images rendered at once; bounds memory for large sets (fixed: affects the noise)
_NOISE_STD = 0.04  # per-pixel Gaussian noise, in [0, 1] intensity units


def _soft(pixel_dist: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return (0.5 - pixel_dist).clamp_(0.0, 1.0)


def _stripes(coord: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor,
             radius: torch.Tensor) -> torch.Tensor:
    """Soft 50% duty-cycle stripes along ``coord`` (normalized units, ``freq`` cycles per unit)."""
    wave = torch.sin(2 * math.pi * freq * coord + phase)
    # Near a zero crossing, wave / (d wave / d pixel) is the signed distance in pixels.
    return _soft(-wave * radius / (2 * math.pi * freq))


def _window(u: torch.Tensor, v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Soft square window of half-size 1 (normalized units) holding a texture."""
    return _soft((torch.maximum(u.abs(), v.abs()) - 1.0) * radius)


def _render_masks(label: str, u: torch.Tensor, v: torch.Tensor, radius: torch.Tensor,
                  freq: torch.Tensor, phase: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Foreground coverage in [0, 1] for one class.

    Args:
        label: class name from :data:`SHAPE_CLASSES`.
        u: ``(n, S, S)`` rotated x coordinates in units of the shape radius.
        v: ``(n, S, S)`` rotated y coordinates in units of the shape radius.
        radius: ``(n, 1, 1)`` shape radius in pixels (converts normalized to pixel distances).
        freq: ``(n, 1, 1)`` texture frequency in cycles per normalized unit.
        phase: ``(n, 2, 1, 1)`` texture phases in radians.
        flip: ``(n, 1, 1)`` +-1, mirrors the diagonal stripes.

    Returns:
        ``(n, S, S)`` float coverage.
    """
    hyp = torch.hypot(u, v)
    if label == "circle":
        return _soft((hyp - 1.0) * radius)
    if label == "square":
        return _soft((torch.maximum(u.abs(), v.abs()) - 0.8) * radius)
    if label == "triangle":
        # Equilateral triangle, circumradius 1: intersection of three half-planes.
        dists = [u * math.cos(a) + v * math.sin(a) - 0.5
                 for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        return _soft(torch.maximum(torch.maximum(dists[0], dists[1]), dists[2]) * radius)
    if label == "cross":
        arm = 0.3
        bar_h = torch.maximum(u.abs() - 0.95, v.abs() - arm)
        bar_v = torch.maximum(u.abs() - arm, v.abs() - 0.95)
        return _soft(torch.minimum(bar_h, bar_v) * radius)
    if label == "ring":
        return _soft(((hyp - 0.72).abs() - 0.2) * radius)
    window = _window(u, v, radius)
    if label == "horizontal_bars":
        return window * _stripes(v, freq, phase[:, 0], radius)
    if label == "vertical_bars":
        return window * _stripes(u, freq, phase[:, 0], radius)
    if label == "diagonal_stripes":
        return window * _stripes((flip * u + v) / math.sqrt(2), freq, phase[:, 0], radius)
    if label == "checkerboard":
        wave = (torch.sin(2 * math.pi * freq * u + phase[:, 0])
                * torch.sin(2 * math.pi * freq * v + phase[:, 1]))
        return window * _soft(-wave * radius / (2 * math.pi * freq))
    if label == "dot_grid":
        cell_u = torch.frac(u * freq + phase[:, 0] / (2 * math.pi) + 10.0) - 0.5
        cell_v = torch.frac(v * freq + phase[:, 1] / (2 * math.pi) + 10.0) - 0.5
        dist = torch.hypot(cell_u, cell_v) / freq - 0.3 / freq  # normalized units
        return window * _soft(dist * radius)
    raise ValueError(f"unknown shape class {label!r}")


def _render_split(num_images: int, image_size: int, generator: torch.Generator) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Draw labels and per-image parameters, then render ``num_images`` images in chunks."""
    num_classes = len(SHAPE_CLASSES)
    size = float(image_size)
    labels = (torch.arange(num_images) % num_classes)[torch.randperm(num_images, generator=generator)]

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    center = uniform(num_images, 2, low=0.32 * size, high=0.68 * size)
    radius = uniform(num_images, low=0.18 * size, high=0.34 * size)
    max_angle = torch.tensor([_MAX_ANGLE[name] for name in SHAPE_CLASSES])[labels]
    angle = uniform(num_images, low=-1.0, high=1.0) * max_angle
    period = uniform(num_images, low=0.15 * size, high=0.22 * size)  # texture period in pixels
    freq = radius / period
    phase = uniform(num_images, 2, high=2 * math.pi)
    flip = torch.where(torch.rand(num_images, generator=generator) < 0.5, -1.0, 1.0)
    background = torch.rand(num_images, 3, generator=generator)
    # Every channel differs by >= 0.25 between foreground and background (visible contrast).
    foreground = (background + uniform(num_images, 3, low=0.25, high=0.75)) % 1.0
    grad_angle = uniform(num_images, high=2 * math.pi)
    grad_amp = uniform(num_images, high=0.2)

    coords = torch.arange(image_size, dtype=torch.float32) + 0.5
    grid_y, grid_x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    images = torch.empty(num_images, 3, image_size, image_size, dtype=torch.uint8)
    for start in range(0, num_images, _CHUNK):
        sl = slice(start, min(start + _CHUNK, num_images))
        n = sl.stop - sl.start

        def col(t: torch.Tensor, sl: slice = sl) -> torch.Tensor:
            return t[sl].reshape(*t[sl].shape, 1, 1)

        dx, dy = grid_x - col(center[:, 0]), grid_y - col(center[:, 1])  # (n, S, S) pixels
        cos, sin = torch.cos(col(angle)), torch.sin(col(angle))
        r = col(radius)
        u, v = (cos * dx + sin * dy) / r, (cos * dy - sin * dx) / r
        mask = torch.empty(n, image_size, image_size)
        chunk_labels = labels[sl]
        for index, name in enumerate(SHAPE_CLASSES):
            idx = (chunk_labels == index).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            mask[idx] = _render_masks(name, u[idx], v[idx], r[idx], col(freq)[idx],
                                      col(phase)[idx], col(flip)[idx])
        gradient = col(grad_amp) * ((grid_x - size / 2) * torch.cos(col(grad_angle))
                                    + (grid_y - size / 2) * torch.sin(col(grad_angle))) / size
        mask = mask.unsqueeze(1)  # (n, 1, S, S)
        rgb = col(background) * (1 - mask) + col(foreground) * mask + gradient.unsqueeze(1)
        rgb += _NOISE_STD * torch.randn(rgb.shape, generator=generator)
        images[sl] = rgb.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return images, labels.to(torch.int64)


def make_shapes(num_train: int = 5000, num_test: int = 1000, image_size: int = 32,
                seed: int = 0) -> ImageDataset:
    """Generate the ``shapes`` dataset deterministically from ``seed``.

    Ten balanced classes (:data:`SHAPE_CLASSES`): five shapes (circle, square, triangle, cross,
    ring) and five textures (horizontal bars, vertical bars, diagonal stripes, checkerboard,
    dot grid) with random position, scale, rotation, colours, background gradient and noise.
    Train and test come from independent named generator streams, so changing ``num_test``
    does not change the training images.

    Args:
        num_train: number of training images.
        num_test: number of test images.
        image_size: side length in pixels (at least 8).
        seed: root seed; equal seeds give equal tensors on the same torch version.

    Returns:
        The dataset, named ``shapes``, with statistics computed from its training images.

    Raises:
        ConfigError: if a count is not positive or ``image_size`` is below 8.
    """
    if num_train < 1 or num_test < 1:
        raise ConfigError(f"shapes needs num_train >= 1 and num_test >= 1, got {num_train} and "
                          f"{num_test}: pass positive counts")
    if image_size < 8:
        raise ConfigError(f"shapes needs image_size >= 8, got {image_size}: pass a larger size")
    train_images, train_labels = _render_split(
        num_train, image_size, make_generator(derive_seed(seed, "shapes-train")))
    test_images, test_labels = _render_split(
        num_test, image_size, make_generator(derive_seed(seed, "shapes-test")))
    mean, std = channel_stats(train_images)
    log.debug("generated shapes: %d train, %d test, %d px", num_train, num_test, image_size)
    return ImageDataset(
        name="shapes",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=list(SHAPE_CLASSES),
        mean=mean,
        std=std,
        extra={"source": "generated", "seed": str(seed)},
    )
