"""Storage accounting (method.md §6.6): one rule for every method, the distiller and ``inspect``.

Every stored floating-point number counts; the cost in *image-equivalents* is that count divided
by the floats in one full-resolution image ``C·H·W``. For the pixel methods (KRR-ST and the random
baseline; their registry entries say ``pixel_storage``), as in the papers, the budget counts only
the images: ``cost = m`` (their targets are listed but not charged). Integer metadata (shapes, the
view list, normalisation) is free. Tensor keys come from :mod:`ssdd_cli.bundle`, the schema's owner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .bundle import (
    IMAGE_BASIS,
    IMAGE_COEFFS,
    IMAGE_MEAN,
    IMAGES,
    REPR_BASIS,
    REPR_COEFFS,
    REPR_MEAN,
    TARGETS,
    approx_keys,
    group_of,
    view_coeffs_key,
    view_targets_key,
)
from .errors import ConfigError


@dataclass(frozen=True)
class StorageReport:
    """Float counts per stored tensor and the budget cost in image-equivalents."""

    floats: dict[str, int]
    image_numel: int
    method: str  # label recorded with the report (the method's registry key)
    num_images: int
    images_only: bool = False  # pixel methods: the budget is charged the image count m
    groups: dict[str, int] = field(default_factory=dict)

    @property
    def total_floats(self) -> int:
        """Every stored float."""
        return sum(self.floats.values())

    @property
    def image_equivalents(self) -> float:
        """All stored floats in full-resolution image-equivalents."""
        return self.total_floats / self.image_numel

    @property
    def cost(self) -> float:
        """What the budget is charged: ``m`` for pixel methods, all floats otherwise."""
        if self.images_only:
            return float(self.num_images)
        return self.image_equivalents

    def fits(self, budget: float) -> bool:
        """Whether the cost is within ``budget`` image-equivalents (with float slack)."""
        return self.cost <= budget + 1e-9

    def table(self) -> list[tuple[str, str, int, float]]:
        """Rows ``(key, shape-free group, floats, image-eq.)`` in a stable order."""
        return [(k, group_of(k), n, n / self.image_numel) for k, n in self.floats.items()]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "method": self.method,
            "image_numel": self.image_numel,
            "num_images": self.num_images,
            "floats": dict(self.floats),
            "groups": dict(self.groups),
            "total_floats": self.total_floats,
            "image_equivalents": round(self.image_equivalents, 4),
            "cost": round(self.cost, 4),
        }

    def describe(self) -> str:
        """One line per group, for logs and error messages."""
        parts = [f"{g} {n:,} ({n / self.image_numel:.2f})" for g, n in self.groups.items() if n]
        return f"{self.total_floats:,} floats = {self.image_equivalents:.2f} image-eq. [" + ", ".join(parts) + "]"


def storage_report(
    shapes: Mapping[str, Sequence[int]],
    *,
    image_shape: Sequence[int],
    label: str,
    num_images: int,
    images_only: bool = False,
) -> StorageReport:
    """Count the floats of every stored tensor (given by shape, so plans and bundles share it).

    Args:
        shapes: tensor key → shape of every *float* tensor that is (or would be) stored.
        image_shape: ``(C, H, W)`` of one full-resolution image.
        label: registry key of the method, recorded with the report.
        num_images: number of stored distilled images ``m``.
        images_only: charge ``m`` instead of every float (the method's ``pixel_storage``).
    """
    floats = {k: int(math.prod(s)) for k, s in shapes.items()}
    groups: dict[str, int] = {}
    for key, n in floats.items():
        groups[group_of(key)] = groups.get(group_of(key), 0) + n
    return StorageReport(floats, int(math.prod(image_shape)), label, num_images, images_only, groups)


SIZINGS: tuple[str, ...] = ("paper", "images")
"""How :func:`auto_size` splits a budget: the paper's ranks 2N and m ≤ N, or ranks N and every image that fits."""


@dataclass(frozen=True)
class BoostSize:
    """Sizes of a basis-parameterised set: images ``m``, ranks ``U``/``V``, hidden ``k``."""

    num_images: int
    image_rank: int
    repr_rank: int
    approx_hidden: int
    basis_size: int


def boost_shapes(
    size: BoostSize,
    *,
    channels: int,
    repr_dim: int,
    views: Sequence[str],
    bases: bool = True,
    approx: bool = True,
    image_size: int,
) -> dict[str, tuple[int, ...]]:
    """The float tensors a Boost-style bundle stores, by key and shape (keys from ``bundle.py``)."""
    m, k = size.num_images, size.approx_hidden
    shapes: dict[str, tuple[int, ...]] = {}
    if bases:
        p = channels * size.basis_size * size.basis_size
        shapes[IMAGE_BASIS] = (size.image_rank, p)
        shapes[IMAGE_MEAN] = (p,)
        shapes[IMAGE_COEFFS] = (m, size.image_rank)
        shapes[REPR_BASIS] = (size.repr_rank, repr_dim)
        shapes[REPR_MEAN] = (repr_dim,)
        shapes[REPR_COEFFS] = (m, size.repr_rank)
        coef = size.repr_rank
    else:
        shapes.update(pixel_shapes(m, channels=channels, image_size=image_size, repr_dim=repr_dim))
        coef = repr_dim
    for view in views[1:]:
        if approx:
            w0, b0, w2, b2 = approx_keys(view)
            shapes.update({w0: (k, coef), b0: (k,), w2: (coef, k), b2: (coef,)})
        else:
            shapes[view_coeffs_key(view) if bases else view_targets_key(view)] = (m, coef)
    return shapes


def pixel_shapes(m: int, *, channels: int, image_size: int, repr_dim: int) -> dict[str, tuple[int, ...]]:
    """The float tensors of a pixel set: ``m`` images and their identity targets."""
    return {IMAGES: (m, channels, image_size, image_size), TARGETS: (m, repr_dim)}


@dataclass(frozen=True)
class SizePlan:
    """What a distillation will store, computed once before any work: sizes, tensor shapes, storage."""

    size: BoostSize
    shapes: dict[str, tuple[int, ...]]
    report: StorageReport


def auto_size(
    budget: int,
    *,
    channels: int,
    image_size: int,
    repr_dim: int,
    views: Sequence[str],
    bases: bool = True,
    approx: bool = True,
    basis_size: int | None = None,
    approx_hidden: int = 4,
    num_images: int | None = None,
    image_rank: int | None = None,
    repr_rank: int | None = None,
    sizing: str = "paper",
) -> BoostSize:
    """Choose ``m, U, V`` for a budget of ``N`` image-equivalents.

    ``sizing="paper"`` (method.md §6.6): basis side ``H/2``, ``k = 4``, ``U = min(2N, P)``,
    ``V = min(2N, D)``, then ``m`` = the largest count that fits the rest, capped at ``N`` while
    neither rank cap binds. ``sizing="images"``: ``U = min(N, P)``, ``V = min(N, D)`` and ``m`` =
    every image the rest of the budget buys (no cap: about a thousand at 32 px
    whatever N, until the ranks reach ``P`` or ``D``). Explicit values are
    kept; a configuration over budget raises :class:`ConfigError` with the breakdown.
    """
    if budget <= 0:
        raise ConfigError(f"--budget must be a positive number of image-equivalents, got {budget}")
    if sizing not in SIZINGS:
        raise ConfigError(f"sizing must be one of {', '.join(SIZINGS)}, got {sizing!r}")
    ranks = 2 * budget if sizing == "paper" else budget
    side = basis_size or max(image_size // 2, 1)
    if side > image_size:
        raise ConfigError(f"basis_size {side} exceeds the image size {image_size}")
    p = channels * side * side
    u = image_rank if image_rank is not None else min(ranks, p)
    v = repr_rank if repr_rank is not None else min(ranks, repr_dim)
    if bases and (u > p or v > repr_dim or u < 1 or v < 1):
        raise ConfigError(
            f"ranks out of range: --image-rank {u} must be in [1, {p}] and --repr-rank {v} in [1, {repr_dim}]"
        )

    def report(m: int) -> StorageReport:
        shapes = boost_shapes(
            BoostSize(m, u, v, approx_hidden, side), channels=channels, repr_dim=repr_dim,
            views=views, bases=bases, approx=approx, image_size=image_size,
        )
        return storage_report(shapes, image_shape=(channels, image_size, image_size), label="boost", num_images=m)

    if num_images is not None:
        rep = report(num_images)
        if not rep.fits(budget):
            raise ConfigError(
                f"m={num_images}, U={u}, V={v} cost {rep.cost:.2f} image-eq. > --budget {budget}: "
                f"{rep.describe()}; lower --num-images/--image-rank/--repr-rank or raise --budget"
            )
        return BoostSize(num_images, u, v, approx_hidden, side)
    if bases and image_rank is None and repr_rank is None and not report(1).fits(budget):
        # Small images with a wide representation: the sizing's ranks (2N or N) leave no room for a single image.
        # Shrink both ranks by 10% steps until ceil(N/2) images fit (never triggered by the
        # reference configurations of method.md §6.6).
        want = -(-budget // 2)
        while (u > 1 or v > 1) and not report(want).fits(budget):
            u, v = max(1, int(u * 0.9)), max(1, int(v * 0.9))
    fixed = report(0)
    if not fixed.fits(budget):
        raise ConfigError(
            f"the bases alone cost {fixed.cost:.2f} image-eq. > --budget {budget}: {fixed.describe()}; "
            "lower --image-rank/--repr-rank or --set basis_size=..."
        )
    per_image = report(1).total_floats - fixed.total_floats
    room = budget * fixed.image_numel - fixed.total_floats
    m = int(room // per_image)
    if sizing == "paper" and bases and u >= 2 * budget and v >= 2 * budget:
        m = min(m, budget)  # rank caps not binding: keep m = N (the reference configuration)
    if m < 1:
        raise ConfigError(f"--budget {budget} leaves no room for a single image after {fixed.describe()}")
    return BoostSize(m, u, v, approx_hidden, side)
