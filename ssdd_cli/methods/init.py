"""Initialisation of distilled sets from real data (method.md §5.1, §6.2, §6.3), used by the method entries."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .. import augment
from ..config import DistillConfig
from ..engine import fit, make_optimizer
from ..errors import ConfigError
from ..reporting import NullReporter, ProgressReporter
from ..storage import BoostSize
from ..teacher import Teacher
from .pca import pca
from .synthetic import SyntheticSet, decode_flat

log = logging.getLogger(__name__)


def real_subset(images: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``count`` distinct random training images."""
    if count > images.shape[0]:
        raise ConfigError(f"asked for {count} images but the dataset has only {images.shape[0]}")
    return torch.randperm(images.shape[0], generator=gen)[:count]


def _sq_dists(c: torch.Tensor, x: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(k, n)`` from rows of ``c`` to rows of ``x`` (``xx``: their squared norms)."""
    return ((c * c).sum(1, keepdim=True) - 2 * c @ x.T + xx).clamp_min(0)


def _nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x``."""
    return torch.cat([_sq_dists(c, xs, (xs * xs).sum(1)).argmin(0) for xs in x.split(chunk)])


def kmeans_subset(reprs: torch.Tensor, count: int, gen: torch.Generator, iters: int = 20) -> torch.Tensor:
    """Indices of ``count`` distinct training images, one per k-means cluster of their representations.

    Lloyd's algorithm from a k-means++ seeding (an empty cluster keeps its centre), in the
    representation space the students are trained to match; then, centre by centre, the nearest image not
    taken yet. A coreset: the set covers the teacher's representation space instead of sampling its density.
    """
    n = reprs.shape[0]
    if count > n:
        raise ConfigError(f"asked for {count} images but the dataset has only {n}")
    x = reprs.detach().float().cpu()
    xx = (x * x).sum(1)
    # k-means++ seeding: each new centre drawn with probability proportional to its squared distance
    first = int(torch.randint(n, (1,), generator=gen))
    picks = [first]
    d2 = _sq_dists(x[first : first + 1], x, xx)[0]
    for _ in range(count - 1):
        nxt = int(torch.multinomial(d2, 1, generator=gen)) if float(d2.sum()) > 0 else int(torch.randint(n, (1,), generator=gen))
        picks.append(nxt)
        d2 = torch.minimum(d2, _sq_dists(x[nxt : nxt + 1], x, xx)[0])
    centres = x[picks].clone()
    for _ in range(iters):
        assign = _nearest(x, centres)
        counts = torch.bincount(assign, minlength=count)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    taken = torch.zeros(n, dtype=torch.bool)
    chosen = []
    for start in range(0, count, 256):
        order = _sq_dists(centres[start : start + 256], x, xx).argsort(1)  # (b, n), nearest first
        for row in order:
            free = row[~taken[row]]
            chosen.append(int(free[0]))
            taken[free[0]] = True
    return torch.tensor(chosen, dtype=torch.long)


def choose_images(images: torch.Tensor, count: int, gen: torch.Generator, select: str,
                  reprs: torch.Tensor | None) -> torch.Tensor:
    """The ``count`` training images a set starts from: uniformly at random, or a k-means coreset of ``reprs``."""
    if select == "kmeans":
        if reprs is None:
            raise ValueError("select=kmeans needs the teacher representations of the training images")
        return kmeans_subset(reprs, count, gen)
    return real_subset(images, count, gen)


def view_targets(teacher: Teacher, raw: torch.Tensor, views: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Teacher representations of each predefined view of raw images ``(m, C, H, W)`` in [0, 1]."""
    return {v: teacher.represent(augment.apply_view(raw, v)) for v in views}


def init_pixels(
    raw: torch.Tensor, teacher: Teacher, config: DistillConfig, mean: tuple[float, ...], std: tuple[float, ...]
) -> SyntheticSet:
    """KRR-ST initialisation: the images themselves and their teacher targets (one per view)."""
    reps = view_targets(teacher, raw, config.views)
    images = raw if config.raw_space else augment.normalize(raw, mean, std)
    return SyntheticSet(
        views=config.views, image_size=raw.shape[-1], channels=raw.shape[1], images=images,
        targets=reps["identity"], view_coeffs={v: reps[v] for v in config.views[1:]},
    )


def downsample_flat(images: torch.Tensor, side: int, mean: tuple[float, ...], std: tuple[float, ...],
                    chunk: int = 4096) -> Iterator[torch.Tensor]:
    """Normalised images resized to ``side`` and flattened, in chunks of ``chunk`` rows (bounded memory)."""
    for i in range(0, images.shape[0], chunk):
        x = augment.normalize(augment.to_float(images[i : i + chunk]), mean, std)
        if side != x.shape[-1]:
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        yield x.flatten(1)


def init_bases(
    train_images: torch.Tensor,
    train_reprs: torch.Tensor,
    chosen: torch.Tensor,
    teacher: Teacher,
    size: BoostSize,
    config: DistillConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    gen: torch.Generator,
) -> tuple[SyntheticSet, dict[str, float]]:
    """Boost initialisation: PCA bases of images and representations, coefficients of ``m`` real images.

    Args:
        train_images: uint8 training images ``(n, C, H, W)``.
        train_reprs: teacher representations of every training image ``(n, D)``.
        chosen: indices of the ``m`` images whose projections become the coefficients.
        teacher: the teacher (for the rotated views' targets).
        size: ``m, U, V, k`` and the basis side.
        config: distillation config (views, init).
        mean: per-channel mean of the source normalisation.
        std: per-channel standard deviation of the source normalisation.
        gen: generator for the random-init ablation.

    Returns:
        The set and diagnostics (explained variance of both bases).
    """
    c, s = train_images.shape[1], train_images.shape[-1]
    side, u, v = size.basis_size, size.image_rank, size.repr_rank
    p, d = c * side * side, train_reprs.shape[1]
    raw = augment.to_float(train_images[chosen])
    small = next(downsample_flat(train_images[chosen], side, mean, std, chunk=len(chosen)))  # (m, P)
    if config.init == "random":
        mu_x = torch.zeros(p)
        b_x = torch.linalg.qr(torch.randn(p, u, generator=gen))[0].T.contiguous()
        mu_y = train_reprs.mean(0)
        b_y = torch.linalg.qr(torch.randn(d, v, generator=gen))[0].T.contiguous()
        stats = {"image_explained": float("nan"), "repr_explained": float("nan")}
    else:
        mu_x, b_x, ev_x = pca(lambda: downsample_flat(train_images, side, mean, std), u, dim=p)
        mu_y, b_y, ev_y = pca(lambda: iter(train_reprs.split(8192)), v, dim=d)
        tot_x = sum(float(((x - mu_x) ** 2).sum()) for x in downsample_flat(train_images, side, mean, std))
        tot_x /= train_images.shape[0] - 1
        tot_y = float(train_reprs.var(0).sum())
        stats = {"image_explained": float(ev_x.sum()) / tot_x, "repr_explained": float(ev_y.sum()) / tot_y}
    c_x = (small - mu_x) @ b_x.T  # (m, U)
    if config.targets_of == "decoded":  # bases only (config check)
        # The student sees the decoded images, not the real ones: give it the teacher's own output on exactly
        # those inputs (each view of the decoded image), and fit the representation bases to these targets.
        decoded = augment.denormalize(decode_flat(mu_x + c_x @ b_x, c, s), mean, std)
        reps = view_targets(teacher, decoded, config.views)
        if config.init == "pca":
            stacked = torch.cat([reps[view] for view in config.views])
            mu_y, b_y, ev_y = pca(lambda: iter(stacked.split(8192)), v, dim=d)
            stats["repr_explained"] = float(ev_y.sum()) / float(stacked.var(0).sum())
    else:
        reps = view_targets(teacher, raw, config.views)
    coeffs = {view: (reps[view] - mu_y) @ b_y.T for view in config.views}  # (m, V) each
    synth = SyntheticSet(
        views=config.views, image_size=train_images.shape[-1], channels=c,
        image_basis=(mu_x, b_x, c_x) if config.bases else None,
        images=None if config.bases else augment.normalize(raw, mean, std),
        repr_basis=(mu_y, b_y, coeffs["identity"]) if config.bases else None,
        targets=None if config.bases else reps["identity"],
        view_coeffs={view: coeffs[view] if config.bases else reps[view] for view in config.views[1:]},
        basis_size=side, freeze_means=config.freeze_means,
    )
    return synth, stats


def fit_images_to_targets(synth: SyntheticSet, teacher: Teacher, config: DistillConfig, gen: torch.Generator,
                          reporter: ProgressReporter | None = None, batch_size: int = 256) -> dict[str, float]:
    """Fit the image coding (bases, coefficients, mean) so the teacher maps every decoded pair to its target.

    ``config.image_fit_steps`` Adam steps at ``config.lr`` on the mean squared error between the teacher's
    representation of a decoded (viewed) image and the target it is paired with, over batches of
    ``batch_size`` pairs drawn from every view (``gen``). The targets do not move; the images do, within
    the span the bases can reach. Returns the teacher's relative error over all pairs before and after.
    """
    with torch.no_grad():
        targets = synth.support()[1]  # view-major: pair a·m + i is view a of image i
    m = synth.num_images

    def error() -> float:
        with torch.no_grad():
            got = torch.cat([teacher.represent_normalized(x, config.amp) for x in synth.support()[0].split(1024)])
            return float((got - targets).norm() / targets.norm().clamp_min(1e-12))

    def step(_: int) -> torch.Tensor:
        idx = torch.randperm(targets.shape[0], generator=gen)[:batch_size].to(targets.device)
        base = synth.decode_images()  # the m identity images; only the drawn pairs are viewed
        groups = [idx[idx // m == a] for a in range(len(synth.views))]
        xs = torch.cat([augment.apply_view(base[g % m], view) for g, view in zip(groups, synth.views, strict=True)])
        return ((teacher.differentiable(xs, config.amp) - targets[torch.cat(groups)]) ** 2).sum(1).mean()

    params = [p for p in (synth.image_basis, synth.image_coeffs, synth.image_mean) if p.requires_grad]
    before = error()
    fit(step, make_optimizer("adam", params, config.lr), config.image_fit_steps, reporter=reporter or NullReporter(),
        name="image fit", log_every=10)
    return {"image_fit_error_before": before, "image_fit_error_after": error()}
