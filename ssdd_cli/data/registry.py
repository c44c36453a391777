"""Dataset registry: a name (or a path) -> an :class:`ImageDataset`, decoded once, then cached.

Sources are looked up under ``data_root`` (default ``<cache dir>/datasets``); nothing is
downloaded unless ``download=True`` is passed, and then only CIFAR through torchvision, into
``data_root``, with a log line naming the destination.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from ssdd_cli import paths
from ssdd_cli.data.base import ImageDataset
from ssdd_cli.data.cache import (
    cache_path,
    fingerprint_paths,
    load_cached,
    save_cached,
)
from ssdd_cli.data.folder import (
    archive_stem,
    fit_image,
    is_archive,
    read_image_folder,
    scan_directory,
)
from ssdd_cli.data.shapes import make_shapes
from ssdd_cli.data.stats import channel_stats
from ssdd_cli.errors import ConfigError, DataError
from ssdd_cli.reporting import NullReporter, ProgressReporter
from ssdd_cli.rng import derive_seed, make_generator

log = logging.getLogger(__name__)

KNOWN_DATASETS: tuple[str, ...] = ("shapes", "cifar10", "cifar100", "imagenet-subset")
DEFAULT_IMAGE_SIZE: dict[str, int] = {"shapes": 32, "cifar10": 32, "cifar100": 32,
                                      "imagenet-subset": 64}
_ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100", "imagenet_subset": "imagenet-subset",
            "imagenette": "imagenet-subset"}

# The 10 Imagenette classes (WordNet ids), i.e. the folders of imagenette64_jpg.tar.gz.
IMAGENETTE_WNIDS: tuple[str, ...] = (
    "n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257",
)
STANDARD_SUBSETS: dict[str, tuple[str, ...]] = {"imagenette": IMAGENETTE_WNIDS}

# method.md §4.4: the statistics KRR-ST uses, kept as reproduction defaults at 32 px.
REFERENCE_STATS: dict[tuple[str, int], tuple[tuple[float, ...], tuple[float, ...]]] = {
    ("cifar10", 32): ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("cifar100", 32): ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_CIFAR_PICKLE_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def dataset_choices_help() -> str:
    """One line describing the accepted dataset names, for ``--help`` texts and errors."""
    return ("shapes (generated, no files needed), cifar10, cifar100, imagenet-subset (read from "
            "--data-root), or a path to an image-folder directory or .tar/.tar.gz archive "
            "(ROOT/train/<class>/*.png, ROOT/test/<class>/...)")


def load_dataset(name: str, *, data_root: str | Path | None = None,
                 cache_dir: str | Path | None = None, image_size: int | None = None,
                 classes: str | Path | None = None, download: bool = False,
                 reporter: ProgressReporter | None = None,
                 max_train: int | None = None) -> ImageDataset:
    """Load a dataset by name or path, decoding it once and caching the uint8 tensors.

    Args:
        name: one of :data:`KNOWN_DATASETS`, or a path to an image-folder directory or archive.
        data_root: folder holding the sources (archives such as ``cifar100_png.tar.gz``, image
            folder trees, or torchvision's CIFAR files); default ``<cache_dir>/datasets``.
        cache_dir: cache root (default ``$SSDD_CACHE`` or ``~/.cache/ssdd``).
        image_size: side length; default 32 (64 for ``imagenet-subset``; for a path, the images'
            own size when they are equal squares, else 32).
        classes: for ``imagenet-subset`` and paths: a text file of class folder names (WordNet
            ids), one per line, optionally ``id<TAB>name``; or ``imagenette``.
        download: allow torchvision to download CIFAR into ``data_root`` when it is not there.
        reporter: progress reporter for decoding (default: silent).
        max_train: keep at most this many training images (a deterministic, class-balanced
            subset; statistics stay those of the full training split).

    Returns:
        The dataset.

    Raises:
        ConfigError: for a non-positive ``image_size`` or ``max_train``, or ``classes`` given
            for a dataset that has no class choice.
        DataError: for an unknown name, a missing source, or an invalid image folder.
    """
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be >= 1, got {image_size}: pass e.g. 32 or 64")
    if max_train is not None and max_train < 1:
        raise ConfigError(f"max_train must be >= 1, got {max_train}: pass a positive count")
    reporter = reporter or NullReporter()
    cache = paths.cache_dir(cache_dir)
    root = Path(data_root).expanduser() if data_root is not None else cache / "datasets"
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in KNOWN_DATASETS:
        size = image_size or DEFAULT_IMAGE_SIZE[key]
        if classes is not None and key != "imagenet-subset":
            raise ConfigError(f"classes={classes!s} applies only to imagenet-subset and image "
                              f"folders, not {key}: drop the option")
        if key == "shapes":
            dataset = make_shapes(image_size=size)
        elif key in ("cifar10", "cifar100"):
            dataset = _load_cifar(key, root, cache, size, download, reporter)
        else:
            dataset = _load_imagenet_subset(root, cache, size, classes, reporter)
    elif Path(name).expanduser().exists():
        dataset = _load_path(Path(name).expanduser(), cache, image_size, classes, reporter)
    else:
        raise DataError(f"unknown dataset {name!r}: known names are {', '.join(KNOWN_DATASETS)}; "
                        f"a path to an image-folder directory or .tar/.tar.gz archive also works")
    return subsample_train(dataset, max_train) if max_train is not None else dataset


def balanced_indices(labels: torch.Tensor, k: int, seed: int, name: str = "subsample") -> torch.Tensor:
    """Sorted indices of ``k`` items taken round-robin over classes, in a random order from stream ``name``."""
    count = labels.shape[0]
    perm = torch.randperm(count, generator=make_generator(derive_seed(seed, name)))
    perm = perm[torch.argsort(labels[perm], stable=True)]  # grouped by class, random within
    sorted_labels = labels[perm]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.arange(count) - starts  # position of each image within its class
    order = torch.argsort(rank * (int(labels.max()) + 1) + sorted_labels, stable=True)
    return perm[order[:k]].sort().values


def subsample_train(dataset: ImageDataset, max_train: int, seed: int = 0) -> ImageDataset:
    """Keep a deterministic, class-balanced subset of at most ``max_train`` training images.

    Images are taken round-robin over classes in a random order drawn from ``seed``, and kept
    in their original order.

    Args:
        dataset: the full dataset.
        max_train: the number of training images to keep.
        seed: root seed of the ``subsample`` stream.

    Returns:
        A new dataset sharing the test split and statistics (``dataset`` itself when it is
        already small enough).
    """
    labels = dataset.train_labels
    if max_train >= labels.shape[0]:
        return dataset
    keep = balanced_indices(labels, max_train, seed)
    extra = {**dataset.extra, "max_train": str(max_train)}
    return dataclasses.replace(dataset, train_images=dataset.train_images[keep],
                               train_labels=labels[keep], extra=extra)


def subsample_test(dataset: ImageDataset, max_test: int, seed: int = 0) -> ImageDataset:
    """Keep a class-balanced subset of at most ``max_test`` test images (stream ``subsample-test``)."""
    labels = dataset.test_labels
    if max_test >= labels.shape[0]:
        return dataset
    keep = balanced_indices(labels, max_test, seed, "subsample-test")
    extra = {**dataset.extra, "max_test": str(max_test)}
    return dataclasses.replace(dataset, test_images=dataset.test_images[keep], test_labels=labels[keep], extra=extra)


def _cached(cache: Path, name: str, size: int | None, fingerprint: str,
            build: Callable[[], ImageDataset], options: Mapping[str, str] | None = None
            ) -> ImageDataset:
    path = cache_path(cache, name, size, fingerprint, options)
    dataset = load_cached(path)
    if dataset is not None:
        log.info("loaded %s (%d px) from cache %s", name, dataset.image_size, path)
        return dataset
    dataset = build()
    save_cached(path, dataset)
    return dataset


def _with_reference_stats(dataset: ImageDataset, key: str, size: int) -> ImageDataset:
    stats = REFERENCE_STATS.get((key, size))
    if stats is None:
        return dataset
    extra = {**dataset.extra, "stats": "method.md reference"}
    return dataclasses.replace(dataset, mean=stats[0], std=stats[1], extra=extra)


def _missing_root(root: Path, what: str) -> DataError:
    return DataError(f"data root {root} does not exist: pass --data-root DIR containing {what}")


def _load_cifar(key: str, root: Path, cache: Path, size: int, download: bool,
                reporter: ProgressReporter) -> ImageDataset:
    pickle_dir = _CIFAR_PICKLE_DIRS[key]
    what = f"{key}_png.tar.gz, a {key}/ image-folder tree, or a {pickle_dir}/ folder"
    if root.is_file() and is_archive(root):
        archives = [root]
    else:
        archives = [root / f"{key}{suffix}" for suffix in
                    ("_png.tar.gz", "_jpg.tar.gz", ".tar.gz", ".tgz", ".tar")]
    archive = next((a for a in archives if a.is_file()), None)
    if archive is not None:
        return _load_folder_source(archive, key, cache, size, None, reporter, ref_key=key)
    if (root / key / "train").is_dir():
        return _load_folder_source(root / key, key, cache, size, None, reporter, ref_key=key)
    if (root / pickle_dir).is_dir() or download:
        return _load_torchvision_cifar(key, root, cache, size, download, reporter)
    if not root.exists():
        raise _missing_root(root, what)
    raise DataError(f"dataset {key!r} not found under {root}: pass --data-root DIR containing "
                    f"{what} (or allow the torchvision download)")


def _load_torchvision_cifar(key: str, root: Path, cache: Path, size: int, download: bool,
                            reporter: ProgressReporter) -> ImageDataset:
    import numpy as np
    import torchvision  # imported here: slow to import, and only this source needs it
    from PIL import Image

    folder = root / _CIFAR_PICKLE_DIRS[key]
    cls = torchvision.datasets.CIFAR10 if key == "cifar10" else torchvision.datasets.CIFAR100
    if not folder.is_dir():
        log.warning("downloading %s with torchvision into %s", key, root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(f"download of {key} into {root} failed ({exc}): place "
                            f"{key}_png.tar.gz or {folder.name}/ under --data-root") from exc

    def build() -> ImageDataset:
        try:
            splits = [cls(str(root), train=train, download=False) for train in (True, False)]
        except (OSError, RuntimeError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read torchvision {key} files under {folder} ({exc}): "
                            f"replace them or pass --data-root with {key}_png.tar.gz") from exc
        tensors = []
        reporter.start(f"read {folder.name}", len(splits))
        try:
            for split in splits:
                data = split.data  # (N, 32, 32, 3) uint8
                if data.shape[1] != size:
                    data = np.stack([np.asarray(fit_image(Image.fromarray(a), size))
                                     for a in data])
                tensors.append(torch.from_numpy(np.ascontiguousarray(data))
                               .permute(0, 3, 1, 2).contiguous())
                tensors.append(torch.tensor(split.targets, dtype=torch.int64))
                reporter.advance(1)
        finally:
            reporter.stop()
        mean, std = channel_stats(tensors[0])
        dataset = ImageDataset(key, tensors[0], tensors[1], tensors[2], tensors[3],
                               list(splits[0].classes), mean, std, {"source": str(folder)})
        return _with_reference_stats(dataset, key, size)

    files = sorted(p for p in folder.iterdir() if p.is_file())
    return _cached(cache, key, size, fingerprint_paths(files), build)


def _folder_fingerprint(source: Path, class_filter: Sequence[str] | None) -> str:
    if source.is_file():
        return fingerprint_paths([source])
    tree, files = scan_directory(source, set(class_filter) if class_filter is not None else None)
    listed = [p for key in sorted(files) for p in files[key]]
    txt = tree / "classes.txt"
    return fingerprint_paths(listed + ([txt] if txt.is_file() else []))


def _load_folder_source(source: Path, name: str, cache: Path, size: int | None,
                        class_filter: Sequence[str] | None, reporter: ProgressReporter,
                        ref_key: str | None = None) -> ImageDataset:
    def build() -> ImageDataset:
        dataset = read_image_folder(source, image_size=size, class_filter=class_filter,
                                    name=name, reporter=reporter)
        if ref_key is not None and size is not None:
            dataset = _with_reference_stats(dataset, ref_key, size)
        return dataset

    options = {"classes": ",".join(sorted(class_filter))} if class_filter is not None else None
    return _cached(cache, name, size, _folder_fingerprint(source, class_filter), build, options)


def _read_class_list(classes: str | Path) -> tuple[list[str], dict[str, str]]:
    """Class ids (and display names) from a standard subset name or a text file."""
    text = str(classes)
    if text.lower() in STANDARD_SUBSETS:
        return list(STANDARD_SUBSETS[text.lower()]), {}
    path = Path(classes).expanduser()
    if not path.is_file():
        raise DataError(f"classes {text!r} is neither a file nor a standard subset "
                        f"({', '.join(STANDARD_SUBSETS)}): pass a text file with one class id "
                        f"(WordNet id) per line")
    ids: list[str] = []
    names: dict[str, str] = {}
    for line in path.read_text().splitlines():
        fields = line.strip().split(None, 1) if "\t" not in line else line.strip().split("\t", 1)
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] not in ids:
            ids.append(fields[0])
        if len(fields) == 2 and fields[1].strip():
            names[fields[0]] = fields[1].strip()
    if not ids:
        raise DataError(f"classes file {path} lists no class ids: write one WordNet id per line")
    return ids, names


def _load_imagenet_subset(root: Path, cache: Path, size: int, classes: str | Path | None,
                          reporter: ProgressReporter) -> ImageDataset:
    wnids, names = _read_class_list(classes) if classes is not None else (
        list(IMAGENETTE_WNIDS), {})
    sources: list[Path] = []
    if root.is_dir() and set(wnids) <= set(IMAGENETTE_WNIDS):
        archives = sorted(p for p in root.glob("imagenette*") if p.is_file() and is_archive(p))
        archives.sort(key=lambda p: p.name != "imagenette64_jpg.tar.gz")
        trees = sorted(p for p in root.glob("imagenette*") if (p / "train").is_dir())
        sources += archives + trees
    sources += [p for p in (root / "imagenet", root)
                if (p / "train").is_dir() and (p / "val").is_dir()]
    if root.is_file() and is_archive(root):
        sources.insert(0, root)
    if not sources:
        what = "imagenette64_jpg.tar.gz, an imagenette*/ image-folder tree, or ImageNet's " \
               "train/<wnid>/ and val/<wnid>/ folders"
        if not root.exists():
            raise _missing_root(root, what)
        raise DataError(f"dataset 'imagenet-subset' not found under {root}: pass --data-root DIR "
                        f"containing {what}")
    source = sources[0]
    log.info("imagenet-subset: %d classes from %s", len(wnids), source)
    dataset = _load_folder_source(source, "imagenet-subset", cache, size, wnids, reporter)
    if names:
        ids = sorted(wnids)
        dataset = dataclasses.replace(dataset, classes=[names.get(i, i) for i in ids])
    return dataset


def _load_path(path: Path, cache: Path, size: int | None, classes: str | Path | None,
               reporter: ProgressReporter) -> ImageDataset:
    class_filter: list[str] | None = None
    names: dict[str, str] = {}
    if classes is not None:
        class_filter, names = _read_class_list(classes)
    if not (path.is_dir() or is_archive(path)):
        raise DataError(f"{path} is neither a directory nor a .tar/.tar.gz archive: pass an "
                        f"image-folder tree ROOT/train/<class>/*.png or an archive of one")
    base = archive_stem(path) if path.is_file() else path.resolve().name
    dataset = _load_folder_source(path, f"folder:{base}", cache, size, class_filter, reporter)
    if names and class_filter is not None:
        dataset = dataclasses.replace(dataset,
                                      classes=[names.get(i, i) for i in sorted(class_filter)])
    return dataset
