"""Image-folder datasets: ``ROOT/{train,test|val}/<class>/*.png`` as a directory or a tar archive.

Labels follow torchvision's ``ImageFolder``: the index of the class folder name in sorted order.
Archives (``.tar``, ``.tar.gz``, ...) are streamed in place with :mod:`tarfile` (one sequential
pass, no extraction) and may hold the tree under a top-level ``NAME/`` folder. Member order is
never relied on: images are sorted by (label, path) after decoding.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ssdd_cli.data.base import ImageDataset
from ssdd_cli.data.stats import channel_stats
from ssdd_cli.errors import DataError
from ssdd_cli.reporting import NullReporter, ProgressReporter

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
TEST_SPLITS: tuple[str, ...] = ("test", "val")  # the first one present is the test split
FALLBACK_SIZE = 32  # used when image_size is None and the images differ in size or shape
_SPLITS = ("train", *TEST_SPLITS)
_MIB = 1 << 20

# (split, class folder, path below the class folder) -> HWC uint8 image
_Images = dict[tuple[str, str, str], np.ndarray]


def is_archive(path: Path) -> bool:
    """Whether ``path`` names a tar archive that :func:`read_image_folder` can stream."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """``/x/cifar100_png.tar.gz`` -> ``cifar100_png``."""
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def fit_image(image: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` (antialiased bilinear); non-square: centre crop first.

    Cropping the centred square of side ``min(w, h)`` and resizing it is the same as resizing
    the shorter side to ``size`` and centre cropping, but done in one resampling pass.

    Args:
        image: an RGB image.
        size: target side length.

    Returns:
        The resized image (``image`` itself when it already has that size).
    """
    width, height = image.size
    if width == height == size:
        return image
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2  # whole pixels: a plain crop stays exact
    return image.resize((size, size), Image.Resampling.BILINEAR,
                        box=(left, top, left + side, top + side))


def decode_image(source: str | Path | IO[bytes], image_size: int | None) -> np.ndarray:
    """Decode one image file to an ``(H, W, 3)`` uint8 RGB array, resized when asked.

    Args:
        source: a path or a binary file object.
        image_size: target side length, or ``None`` to keep the decoded size.

    Returns:
        The RGB pixels.

    Raises:
        OSError: if PIL cannot read the data (callers turn it into a :class:`DataError`).
    """
    with Image.open(source) as image:
        if image_size is not None and image.format == "JPEG":
            # Let libjpeg downscale large images by a power of two while decoding (fast).
            image.draft("RGB", (image_size, image_size))
        rgb = image if image.mode == "RGB" else _to_8bit(image).convert("RGB")
        if image_size is not None:
            rgb = fit_image(rgb, image_size)
        return np.asarray(rgb)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and integer/float grayscale to 8 bits (PIL's ``convert`` would clip them to white)."""
    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image, dtype=np.uint16) // 257).astype(np.uint8))
    if image.mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8))
    return image


def _decode_member(data: bytes, where: str, image_size: int | None) -> np.ndarray:
    try:
        return decode_image(io.BytesIO(data), image_size)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot decode image {where}: {exc}; remove or replace the file") from exc


def _parse_classes_txt(text: str, folders: Sequence[str]) -> list[str] | None:
    """Display names from ``classes.txt`` (``name`` per line in label order, or ``id<TAB>name``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any("\t" in line for line in lines):
        mapping = dict(line.split("\t", 1) for line in lines if "\t" in line)
        names = [mapping.get(folder, folder).strip() for folder in folders]
    elif len(lines) == len(folders):
        names = lines
    else:
        return None
    return names if len(set(names)) == len(names) else None


def _split_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.split("/") if p not in ("", "."))


class _ArchiveReader:
    """One sequential pass over a tar archive, decoding every image that may be in the tree."""

    def __init__(self, path: Path, image_size: int | None, class_filter: set[str] | None,
                 reporter: ProgressReporter) -> None:
        self.path = path
        self.image_size = image_size
        self.class_filter = class_filter
        self.reporter = reporter
        self.by_prefix: dict[tuple[str, ...], _Images] = defaultdict(dict)
        self.class_dirs: dict[tuple[str, ...], set[tuple[str, str]]] = defaultdict(set)
        self.classes_txt: dict[tuple[str, ...], str] = {}

    def _wanted(self, cls: str) -> bool:
        return self.class_filter is None or cls in self.class_filter

    def _visit(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _split_parts(member.name)
        if member.isdir():
            for depth in (0, 1):
                if (len(parts) == depth + 2 and parts[depth] in _SPLITS
                        and self._wanted(parts[depth + 1])):
                    self.class_dirs[parts[:depth]].add((parts[depth], parts[depth + 1]))
            return
        if not member.isfile():
            return
        if parts and parts[-1] == "classes.txt" and len(parts) <= 2:
            handle = tar.extractfile(member)
            if handle is not None:
                self.classes_txt[parts[:-1]] = handle.read().decode("utf-8", errors="replace")
            return
        if not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            return
        keys = [(parts[:depth], (parts[depth], parts[depth + 1], "/".join(parts[depth + 2:])))
                for depth in (0, 1)
                if len(parts) >= depth + 3 and parts[depth] in _SPLITS
                and self._wanted(parts[depth + 1])]
        if not keys:
            return
        handle = tar.extractfile(member)
        if handle is None:
            return
        array = _decode_member(handle.read(), f"{self.path}:{member.name}", self.image_size)
        for prefix, key in keys:
            self.by_prefix[prefix][key] = array
            self.class_dirs[prefix].add(key[:2])

    def read(self) -> tuple[str, _Images, set[tuple[str, str]], str | None]:
        """Stream the archive; return (tree prefix, images, class dirs, classes.txt text)."""
        try:
            size = max(1, -(-self.path.stat().st_size // _MIB))
            with open(self.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
                self.reporter.start(f"decode {self.path.name} (MiB)", size)
                done = 0
                for member in tar:
                    self._visit(tar, member)
                    position = raw.tell() // _MIB
                    if position > done:
                        self.reporter.advance(position - done)
                        done = position
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"cannot read archive {self.path}: {exc}; check that it is a complete "
                            f".tar/.tar.gz file") from exc
        finally:
            self.reporter.stop()
        candidates = [p for p, imgs in self.by_prefix.items() if any(k[0] == "train" for k in imgs)]
        if not candidates:
            raise DataError(f"no images under train/<class>/ in archive {self.path}: expected "
                            f"[NAME/]train/<class>/*.png and [NAME/]test/<class>/... members")
        if () in candidates:
            candidates = [()]  # a tree at the archive root wins over look-alike sub-folders
        if len(candidates) > 1:
            names = ", ".join(sorted("/".join(c) for c in candidates))
            raise DataError(f"archive {self.path} holds several image-folder trees ({names}): "
                            f"pass an archive with a single NAME/train/ tree")
        prefix = candidates[0]
        return ("/".join(prefix), self.by_prefix[prefix], self.class_dirs[prefix],
                self.classes_txt.get(prefix))


def _find_tree_root(root: Path) -> Path:
    if (root / "train").is_dir():
        return root
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())
    if len(subdirs) == 1:
        return subdirs[0]
    if not subdirs:
        raise DataError(f"no train/ folder under {root}: expected ROOT/train/<class>/*.png and "
                        f"ROOT/test/<class>/... (or val/)")
    names = ", ".join(p.name for p in subdirs)
    raise DataError(f"{root} holds several image-folder trees ({names}): pass one of them")


def scan_directory(root: Path, class_filter: set[str] | None = None) -> tuple[
        Path, dict[tuple[str, str], list[Path]]]:
    """List the image files of a directory tree by (split, class folder), sorted.

    Args:
        root: the tree root (holding ``train/``) or a folder with exactly one such tree.
        class_filter: class folder names to keep (``None``: all).

    Returns:
        ``(tree root, {(split, class): [files]})``; empty class folders map to empty lists.

    Raises:
        DataError: if no ``train/`` folder is found.
    """
    tree = _find_tree_root(root)
    files: dict[tuple[str, str], list[Path]] = {}
    for split in _SPLITS:
        split_dir = tree / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if class_filter is not None and class_dir.name not in class_filter:
                continue
            found = []
            for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
                dirnames.sort()
                found += [Path(dirpath) / f for f in sorted(filenames)
                          if f.lower().endswith(IMAGE_EXTENSIONS)]
            files[(split, class_dir.name)] = found
    return tree, files


def _read_directory(root: Path, image_size: int | None, class_filter: set[str] | None,
                    reporter: ProgressReporter) -> tuple[Path, _Images, set[tuple[str, str]],
                                                         str | None]:
    tree, files = scan_directory(root, class_filter)
    images: _Images = {}
    reporter.start(f"decode {tree.name}", sum(len(v) for v in files.values()))
    try:
        for (split, cls), paths in files.items():
            class_dir = tree / split / cls
            for path in paths:
                try:
                    array = decode_image(path, image_size)
                except (OSError, UnidentifiedImageError, ValueError) as exc:
                    raise DataError(f"cannot decode image {path}: {exc}; remove or replace the "
                                    f"file") from exc
                images[(split, cls, path.relative_to(class_dir).as_posix())] = array
                reporter.advance(1)
    finally:
        reporter.stop()
    txt = tree / "classes.txt"
    return tree, images, set(files), txt.read_text(errors="replace") if txt.is_file() else None


def _has_images(counts: dict[tuple[str, str], int], split: str) -> bool:
    return any(n > 0 for (s, _), n in counts.items() if s == split)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    if not arrays:
        raise ValueError("no arrays to stack")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_image_folder(source: str | Path, *, image_size: int | None = None,
                      class_filter: Sequence[str] | None = None, name: str | None = None,
                      reporter: ProgressReporter | None = None) -> ImageDataset:
    """Read an image-folder tree (directory or tar archive) into uint8 tensors.

    Args:
        source: a directory holding ``train/`` and ``test/`` (or ``val/``) class folders, a
            directory holding exactly one such tree, or a tar archive of one (optionally under a
            top-level ``NAME/`` folder).
        image_size: side length to resize to; ``None`` keeps the images' own size when they all
            are equal squares, else uses 32.
        class_filter: class folder names to keep (labels are their sorted order); each must exist
            in the training split. ``None`` keeps every class.
        name: dataset name (default ``folder:<basename>``).
        reporter: progress reporter (default: silent).

    Returns:
        The dataset with statistics computed from its training images. ``extra`` records the
        source, the test split used and, when ``classes.txt`` gives display names, the folder
        names as JSON under ``class_folders``.

    Raises:
        DataError: for a missing source, a wrong layout, an empty or unknown class, a test class
            absent from training, or an undecodable image.
    """
    path = Path(source).expanduser()
    reporter = reporter or NullReporter()
    wanted = set(class_filter) if class_filter is not None else None
    if not path.exists():
        raise DataError(f"image folder {path} does not exist: pass a directory with "
                        f"train/<class>/ and test/<class>/ folders, or a .tar/.tar.gz of one")
    if path.is_dir():
        tree, images, class_dirs, txt = _read_directory(path, image_size, wanted, reporter)
        where = str(tree)
    elif is_archive(path):
        prefix, images, class_dirs, txt = _ArchiveReader(path, image_size, wanted, reporter).read()
        where = f"{path}:{prefix}" if prefix else str(path)
    else:
        raise DataError(f"{path} is neither a directory nor a .tar/.tar.gz archive: pass an "
                        f"image-folder tree ROOT/train/<class>/*.png or an archive of one")
    dataset_name = name or f"folder:{archive_stem(path) if path.is_file() else path.name}"
    return _assemble(dataset_name, where, images, class_dirs, txt, image_size, wanted)


def _assemble(name: str, where: str, images: _Images, class_dirs: set[tuple[str, str]],
              classes_txt: str | None, image_size: int | None,
              class_filter: set[str] | None) -> ImageDataset:
    train_classes = sorted(c for s, c in class_dirs if s == "train")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for split, cls, _ in images:
        counts[(split, cls)] += 1
    empty = [c for c in train_classes if counts[("train", c)] == 0]
    if empty:
        raise DataError(f"class folder(s) {', '.join(empty[:5])} under {where}/train have no "
                        f"images ({', '.join(IMAGE_EXTENSIONS)}): add images or remove them")
    if not train_classes:
        raise DataError(f"no training images under {where}/train/<class>/: expected files "
                        f"ending in {', '.join(IMAGE_EXTENSIONS)}")
    if class_filter is not None:
        missing = sorted(class_filter - set(train_classes))
        if missing:
            raise DataError(f"class(es) {', '.join(missing[:10])} not found under {where}/train "
                            f"(it has {len(train_classes)}, e.g. {', '.join(train_classes[:5])}):"
                            f" choose classes that exist in the source")
    test_split = next((s for s in TEST_SPLITS if _has_images(counts, s)), None)
    if test_split is None:
        raise DataError(f"no test split under {where}: add test/<class>/ (or val/<class>/) "
                        f"folders with images")
    label_of = {c: i for i, c in enumerate(train_classes)}
    unknown = sorted({c for s, c, _ in images if s == test_split and c not in label_of})
    if unknown:
        raise DataError(f"{test_split}/ class(es) {', '.join(unknown[:5])} under {where} are not "
                        f"in train/: use the same class folders in both splits")
    split_arrays: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []),
                                                                   test_split: ([], [])}
    for key in sorted((k for k in images if k[0] in split_arrays),
                      key=lambda k: (label_of[k[1]], k[2])):
        arrays, labels = split_arrays[key[0]]
        arrays.append(images[key])
        labels.append(label_of[key[1]])
    shapes = {a.shape for arrays, _ in split_arrays.values() for a in arrays}
    if len(shapes) > 1 or any(s[0] != s[1] for s in shapes):
        size = image_size or FALLBACK_SIZE
        log.info("images under %s differ in size or are not square; resizing to %d px", where, size)
        for arrays, _ in split_arrays.values():
            arrays[:] = [np.asarray(fit_image(Image.fromarray(a), size)) for a in arrays]
    train_images = _stack(split_arrays["train"][0])
    test_images = _stack(split_arrays[test_split][0])
    mean, std = channel_stats(train_images)
    display = _parse_classes_txt(classes_txt, train_classes) if classes_txt else None
    extra = {"source": where, "test_split": test_split}
    if display is not None and display != train_classes:
        extra["class_folders"] = json.dumps(train_classes)
    log.info("read %s: %d train / %d test images, %d classes, %d px", name,
             train_images.shape[0], test_images.shape[0], len(train_classes),
             train_images.shape[-1])
    return ImageDataset(
        name=name,
        train_images=train_images,
        train_labels=torch.tensor(split_arrays["train"][1], dtype=torch.int64),
        test_images=test_images,
        test_labels=torch.tensor(split_arrays[test_split][1], dtype=torch.int64),
        classes=display or train_classes,
        mean=mean,
        std=std,
        extra=extra,
    )
