"""On-disk cache of decoded datasets: uint8 tensors in one safetensors file per (source, size).

Decoding 60,000 PNGs takes seconds; loading the cached tensors takes well under one. A cache
file is named from the dataset name, the resolution and a fingerprint of the source (paths,
sizes, modification times, and any option that changes the tensors), so an edited source gets a
new file. Files go through the package's one atomic writer (:func:`ssdd_cli.bundle.save_tensors`),
so an interrupted write never leaves a partial cache file behind under the final name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..bundle import load_tensors, save_tensors
from ..errors import BundleError
from .base import ImageDataset

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when the decoding (resizing, ordering) changes
_TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def fingerprint_paths(paths: Iterable[Path]) -> str:
    """Hash the resolved path, size and modification time of each file (order-sensitive).

    Args:
        paths: the files the dataset is decoded from.

    Returns:
        A hex digest that changes when any file is replaced, resized or touched.
    """
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(cache_dir: Path, name: str, image_size: int | None, fingerprint: str,
               options: Mapping[str, str] | None = None) -> Path:
    """Path of the cache file for one decoded dataset.

    Args:
        cache_dir: the cache root; files go under its ``tensors/`` folder.
        name: dataset name (sanitized into the file name).
        image_size: resolution, or ``None`` for the images' own size.
        fingerprint: identity of the source, e.g. from :func:`fingerprint_paths`.
        options: further settings that change the tensors (e.g. the class subset).

    Returns:
        ``cache_dir/tensors/<name>-<size>px-<hash>.safetensors``.
    """
    key = json.dumps({"v": CACHE_VERSION, "name": name, "size": image_size, "source": fingerprint,
                      "options": dict(sorted((options or {}).items()))}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"
    size = f"{image_size}px" if image_size is not None else "native"
    return cache_dir / "tensors" / f"{safe}-{size}-{digest}.safetensors"


def load_cached(path: Path) -> ImageDataset | None:
    """Load a cached dataset, or return ``None`` when absent, unreadable or from another version.

    Args:
        path: a file written by :func:`save_cached`.

    Returns:
        The dataset, or ``None`` (the caller then decodes the source again).
    """
    if not path.is_file():
        return None
    try:
        tensors, meta = load_tensors(path)
        if meta.get("ssdd.cache_version") != CACHE_VERSION or set(_TENSOR_KEYS) - set(tensors):
            log.info("ignoring cache file %s from another ssdd version", path)
            return None
        dataset = ImageDataset(
            name=meta["name"],
            train_images=tensors["train_images"],
            train_labels=tensors["train_labels"],
            test_images=tensors["test_images"],
            test_labels=tensors["test_labels"],
            classes=list(json.loads(meta["classes"])),
            mean=tuple(json.loads(meta["mean"])),
            std=tuple(json.loads(meta["std"])),
            extra=dict(json.loads(meta["extra"])),
        )
    except (ValueError, KeyError, BundleError) as exc:
        log.warning("ignoring unreadable cache file %s (%s); decoding the source again", path, exc)
        return None
    log.debug("loaded %s from cache %s", dataset.name, path)
    return dataset


def save_cached(path: Path, dataset: ImageDataset) -> bool:
    """Write ``dataset`` to ``path`` atomically.

    A failure to write (read-only or full disk) is logged and reported by the return value:
    the cache only saves time, so it never stops a run.

    Args:
        path: destination, usually from :func:`cache_path`.
        dataset: the decoded dataset.

    Returns:
        Whether the file was written.
    """
    tensors = {key: getattr(dataset, key).detach().cpu().contiguous() for key in _TENSOR_KEYS}
    metadata = {
        "ssdd.cache_version": CACHE_VERSION,
        "name": dataset.name,
        "classes": json.dumps(list(dataset.classes)),
        "mean": json.dumps(list(dataset.mean)),
        "std": json.dumps(list(dataset.std)),
        "extra": json.dumps(dataset.extra),
    }
    try:
        save_tensors(path, tensors, metadata)
    except OSError as exc:
        log.warning("could not write dataset cache %s (%s); continuing without it", path, exc)
        return False
    log.info("cached %s at %s", dataset.name, path)
    return True
