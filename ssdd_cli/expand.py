"""Expansion (method.md §6.7): rebuild every view's image and target from a bundle, on demand."""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from . import augment
from .bundle import Bundle, save_tensors
from .errors import ConfigError
from .methods.synthetic import SyntheticSet
from .paths import MANIFEST_TAG, atomic_dir, check_output, output_errors


def synthetic_from_bundle(bundle: Bundle) -> SyntheticSet:
    """The distilled set of a bundle as a (frozen) :class:`SyntheticSet`."""
    synth = SyntheticSet.from_tensors(bundle.tensors, views=bundle.views, image_size=bundle.image_shape[1],
                                      channels=bundle.image_shape[0], basis_size=bundle.basis_size)
    return synth.requires_grad_(False).eval()


def select_views(bundle: Bundle, views: str | list[str] | None) -> tuple[str, ...]:
    """Validate a ``--views`` selection against the bundle's views (``None`` = all)."""
    if views is None or views == "all":
        return tuple(bundle.views)
    wanted = [v.strip() for v in (views.split(",") if isinstance(views, str) else views) if v.strip()]
    unknown = [v for v in wanted if v not in bundle.views]
    if unknown:
        raise ConfigError(f"view(s) {unknown} are not in this bundle; it has {', '.join(bundle.views)}")
    return tuple(wanted)


@torch.no_grad()
def expand_pairs(
    bundle: Bundle, *, views: str | list[str] | None = None, device: torch.device | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, target) pairs of a bundle, view-major.

    Returns:
        ``images (|A|·m, C, H, W)`` in the bundle's image space (normalised unless ``image_space`` is
        ``raw``) and ``targets (|A|·m, D)``, float32 on ``device``; the distilled set's support pairs up
        to float rounding (:meth:`~ssdd_cli.methods.synthetic.SyntheticSet.rebuild`), written into ``out``
        when given (preallocated tensors of those shapes on ``device``).
    """
    synth = synthetic_from_bundle(bundle)
    if device is not None:
        synth.to(device)
    return synth.rebuild(select_views(bundle, views), out=out)


def to_uint8(images: torch.Tensor, bundle: Bundle) -> torch.Tensor:
    """De-normalise (if needed) and quantise images to uint8 for viewing."""
    x = images.float().cpu()
    if bundle.meta.image_space != "raw":
        x = augment.denormalize(x, bundle.mean, bundle.std)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def make_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile uint8 images ``(n, C, H, W)`` into one ``(C, H', W')`` grid with white padding."""
    n, c, h, w = images.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = math.ceil(n / ncol)
    grid = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[i]
    return grid


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write a uint8 ``(C, H, W)`` tensor as PNG."""
    from PIL import Image

    arr = image.permute(1, 2, 0).numpy()
    Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0]).save(path)


def save_pngs(jobs: list[tuple[torch.Tensor, Path]], workers: int | None = None) -> None:
    """Write many PNGs on a thread pool (PIL's encoder releases the GIL); the first error is raised."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 64:
        for image, path in jobs:
            save_png(image, path)
        return
    pool = ThreadPoolExecutor(workers)
    try:
        for _ in pool.map(lambda job: save_png(*job), jobs):
            pass
    finally:  # on the first error, drop the writes not yet started
        pool.shutdown(wait=True, cancel_futures=True)


def write_expanded(
    bundle: Bundle,
    out_dir: str | Path,
    *,
    views: str | list[str] | None = None,
    device: torch.device | None = None,
    overwrite: bool = False,
    write_images: bool = True,
) -> dict[str, Any]:
    """Write PNGs (one per pair and one grid per view), ``pairs.safetensors`` and ``manifest.json``.

    The PNGs are 8-bit and for people; programs should read the float tensors.
    """
    protect = [bundle.path] if bundle.path else []
    out_dir = check_output(out_dir, overwrite, kind="dir", protect=protect)
    chosen = select_views(bundle, views)
    images, targets = expand_pairs(bundle, views=list(chosen), device=device)
    m = bundle.num_images
    with output_errors(out_dir), atomic_dir(out_dir, overwrite, protect) as tmp:
        files: list[dict[str, Any]] = []
        pix = to_uint8(images, bundle)
        if write_images:
            (tmp / "images").mkdir()
            jobs: list[tuple[torch.Tensor, Path]] = []
            for vi, view in enumerate(chosen):
                block = pix[vi * m : (vi + 1) * m]
                jobs.append((make_grid(block), tmp / f"grid_{view}.png"))
                for i in range(m):
                    name = f"images/{i:05d}_{view}.png"
                    jobs.append((block[i], tmp / name))
                    files.append({"file": name, "index": i, "view": view, "row": vi * m + i})
            save_pngs(jobs)
        save_tensors(tmp / "pairs.safetensors", {"images": images.cpu(), "targets": targets.cpu()},
                     {"views": json.dumps(list(chosen)), "image_space": bundle.meta.image_space,
                      "mean": json.dumps(list(bundle.mean)), "std": json.dumps(list(bundle.std))})
        from . import __version__

        manifest = {
            "written_by": MANIFEST_TAG,  # lets a later `expand --overwrite` replace this folder, and only it
            "ssdd_version": __version__,
            "bundle": str(bundle.path) if bundle.path else None,
            "method": bundle.method,
            "views": list(chosen),
            "num_images": m,
            "num_pairs": int(images.shape[0]),
            "image_shape": list(bundle.image_shape),
            "repr_dim": int(targets.shape[1]),
            "image_space": bundle.meta.image_space,
            "mean": list(bundle.mean),
            "std": list(bundle.std),
            "tensors": "pairs.safetensors (images: normalised float32, targets: float32; row = view_index*m + i)",
            "files": files,
            "owned": sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
