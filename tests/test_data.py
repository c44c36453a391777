"""Tests for the dataset layer: shapes, image folders (directory and archive), cache, registry."""

from __future__ import annotations

import random
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ssdd_cli.data import KNOWN_DATASETS, ImageDataset, load_dataset, make_shapes
from ssdd_cli.data import folder as folder_mod
from ssdd_cli.data import registry as registry_mod
from ssdd_cli.data.registry import REFERENCE_STATS, dataset_choices_help, subsample_train
from ssdd_cli.data.stats import channel_stats
from ssdd_cli.errors import ConfigError, DataError

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CLASSES = ("cat", "ant", "bee")  # deliberately unsorted: labels must follow sorted order
TENSOR_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")


def colour(cls: str, index: int, split: str) -> tuple[int, int, int]:
    """A solid colour that identifies (class, index, split) exactly in a lossless image."""
    return (40 + 60 * CLASSES.index(cls), 20 + 30 * index, 200 if split == "train" else 100)


def write_tree(root: Path, size: int = 12, per_class: int = 4, test_split: str = "val") -> Path:
    """Write ROOT/{train,val}/<class>/ with PNGs and one JPEG per class; return ROOT."""
    for split in ("train", test_split):
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for index in range(per_class):
                ext = "jpg" if index == per_class - 1 else "png"
                Image.new("RGB", (size, size), colour(cls, index, split)).save(
                    folder / f"{index:03d}.{ext}")
    (root / "classes.txt").write_text("ant\nbee\ncat\n")
    return root


def write_tar(tree: Path, archive: Path) -> Path:
    """Archive ``tree`` under a top-level folder named like it, members in shuffled order."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    random.Random(0).shuffle(files)
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=f"{tree.name}/{path.relative_to(tree).as_posix()}")
    return archive


def assert_same(a: ImageDataset, b: ImageDataset) -> None:
    """Assert equal tensors, classes and statistics."""
    for field in TENSOR_FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.classes == b.classes
    assert a.mean == b.mean and a.std == b.std


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small image-folder tree with a val/ split."""
    return write_tree(tmp_path / "mytree")


# ----------------------------------------------------------------------------- shapes


def test_shapes_is_deterministic_per_seed() -> None:
    """Equal seeds give equal tensors; a different seed does not."""
    first = make_shapes(num_train=64, num_test=16, image_size=16, seed=1)
    again = make_shapes(num_train=64, num_test=16, image_size=16, seed=1)
    other = make_shapes(num_train=64, num_test=16, image_size=16, seed=2)
    assert_same(first, again)
    assert not torch.equal(first.train_images, other.train_images)
    assert not torch.equal(first.test_images, other.test_images)
    # Train and test come from independent streams: the test count does not move training data.
    assert torch.equal(make_shapes(64, 5, 16, seed=1).train_images, first.train_images)


def test_shapes_layout_and_balance() -> None:
    """Shapes, dtypes, class count and balance, and statistics."""
    ds = make_shapes(num_train=200, num_test=50, image_size=24, seed=0)
    assert ds.name == "shapes"
    assert ds.num_classes >= 10 and len(set(ds.classes)) == ds.num_classes
    assert ds.train_images.shape == (200, 3, 24, 24) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (50, 3, 24, 24) and ds.test_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.dtype == torch.int64
    assert torch.bincount(ds.train_labels, minlength=ds.num_classes).tolist() == [20] * 10
    assert ds.image_size == 24 and ds.num_channels == 3
    assert (ds.mean, ds.std) == channel_stats(ds.train_images)
    # Not constant images: every image has foreground and background.
    flat = ds.train_images.flatten(1).float()
    assert bool((flat.std(dim=1) > 10).all())


def test_shapes_classes_differ_in_mean_image() -> None:
    """Each class has a distinct average structure (learnable)."""
    ds = make_shapes(num_train=1000, num_test=10, image_size=16, seed=0)
    # Class-mean "structure" images (per-image contrast normalized) must be distinct per class.
    x = ds.train_images.float().mean(1).flatten(1)
    x = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)
    means = torch.stack([x[ds.train_labels == c].abs().mean(0) for c in range(ds.num_classes)])
    dists = torch.cdist(means, means) + torch.eye(ds.num_classes) * 1e9
    assert float(dists.min()) > 0.5


def test_shapes_rejects_bad_sizes() -> None:
    """Invalid sizes raise ConfigError."""
    with pytest.raises(ConfigError, match="image_size"):
        make_shapes(image_size=4)
    with pytest.raises(ConfigError, match="num_train"):
        make_shapes(num_train=0)


# ----------------------------------------------------------------------------- folders


def test_folder_directory_labels_follow_sorted_names(tree: Path, tmp_path: Path) -> None:
    """Labels are the sorted class-folder order and pixels are kept."""
    ds = load_dataset(str(tree), cache_dir=tmp_path / "cache")
    assert ds.name == "folder:mytree"
    assert ds.classes == ["ant", "bee", "cat"]
    assert ds.extra["test_split"] == "val"
    assert ds.train_images.shape == (12, 3, 12, 12) and ds.test_images.shape == (12, 3, 12, 12)
    assert ds.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for image, label in zip(ds.train_images, ds.train_labels, strict=True):
        cls = ds.classes[int(label)]
        expected = [colour(cls, i, "train") for i in range(4)]
        pixel = tuple(int(v) for v in image[:, 5, 5])
        # PNGs are exact; the JPEG (index 3) only within compression error.
        assert any(np.abs(np.subtract(pixel, e)).max() <= 4 for e in expected)
    png = ds.train_images[ds.train_labels == 0][0]
    assert tuple(png[:, 0, 0].tolist()) == colour("ant", 0, "train")


def test_folder_archive_equals_directory(tree: Path, tmp_path: Path) -> None:
    """A .tar.gz with a top-level folder and shuffled members reads like the directory."""
    archive = write_tar(tree, tmp_path / "mytree.tar.gz")
    from_dir = load_dataset(str(tree), cache_dir=tmp_path / "cache")
    from_tar = load_dataset(str(archive), cache_dir=tmp_path / "cache")
    assert from_tar.name == "folder:mytree"
    assert_same(from_dir, from_tar)


def test_folder_archive_without_top_level_folder(tree: Path, tmp_path: Path) -> None:
    """An archive with train/ at its root is read too."""
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(tree.rglob("*.png")):
            tar.add(path, arcname=path.relative_to(tree).as_posix())
    ds = folder_mod.read_image_folder(archive)
    assert ds.classes == ["ant", "bee", "cat"] and ds.train_images.shape[0] == 9


def test_folder_resize_and_centre_crop(tree: Path, tmp_path: Path) -> None:
    """Resizing keeps solid colours; non-square images are centre cropped."""
    # A non-square image: 24 wide x 12 high, left/right thirds red, centre blue.
    wide = np.zeros((12, 24, 3), np.uint8)
    wide[:, :6] = (255, 0, 0)
    wide[:, 18:] = (255, 0, 0)
    wide[:, 6:18] = (0, 0, 255)
    Image.fromarray(wide).save(tree / "train" / "ant" / "wide.png")
    ds = load_dataset(str(tree), cache_dir=tmp_path / "cache", image_size=8)
    assert ds.train_images.shape == (13, 3, 8, 8) and ds.test_images.shape[-2:] == (8, 8)
    # Solid images keep their colour through the antialiased resize.
    first = ds.train_images[0]
    assert tuple(first[:, 4, 4].tolist()) == colour("ant", 0, "train")
    # Same as resizing the shorter side to 8 (24x12 -> 16x8) and keeping the middle 8 columns.
    reference = Image.fromarray(wide).resize((16, 8), Image.Resampling.BILINEAR).crop((4, 0, 12, 8))
    cropped = ds.train_images[ds.train_labels == 0][-1]
    assert torch.equal(cropped, torch.from_numpy(np.array(reference)).permute(2, 0, 1))
    assert cropped[2, :, 1:-1].min() >= 250 and cropped[0, :, 1:-1].max() <= 5  # centre is blue


def test_folder_mixed_sizes_default_to_32(tree: Path) -> None:
    """Images of different sizes are resized to 32 px by default."""
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tree / "train" / "bee" / "big.png")
    ds = folder_mod.read_image_folder(tree)
    assert ds.image_size == 32 and ds.train_images.shape[0] == 13


def test_folder_class_filter_and_classes_txt(tmp_path: Path) -> None:
    """A class filter relabels in sorted order; classes.txt gives display names."""
    tree = write_tree(tmp_path / "wn")
    (tree / "classes.txt").write_text("ant\tAnt (insect)\nbee\tBee\ncat\tCat\n")
    ds = folder_mod.read_image_folder(tree, class_filter=["cat", "bee"])
    assert ds.classes == ["Bee", "Cat"]
    assert ds.extra["class_folders"] == '["bee", "cat"]'
    assert ds.train_labels.tolist() == [0] * 4 + [1] * 4
    with pytest.raises(DataError, match="dog"):
        folder_mod.read_image_folder(tree, class_filter=["cat", "dog"])


# ----------------------------------------------------------------------------- cache


def test_cache_round_trip_skips_decoding(tree: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The second load comes from the cache; a changed source is decoded again."""
    cache = tmp_path / "cache"
    first = load_dataset(str(tree), cache_dir=cache)
    files = list((cache / "tensors").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"

    def broken(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(folder_mod, "decode_image", broken)
    second = load_dataset(str(tree), cache_dir=cache)
    assert_same(first, second)
    assert second.name == first.name and second.extra == first.extra
    # A new file changes the fingerprint, so the source is decoded again.
    Image.new("RGB", (12, 12), (9, 9, 9)).save(tree / "train" / "ant" / "new.png")
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_dataset(str(tree), cache_dir=cache)


def test_cache_env_variable(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SSDD_CACHE sets the default cache directory."""
    monkeypatch.setenv("SSDD_CACHE", str(tmp_path / "envcache"))
    from ssdd_cli.paths import cache_dir

    assert cache_dir() == tmp_path / "envcache"
    load_dataset(str(tree))
    assert len(list((tmp_path / "envcache" / "tensors").glob("*.safetensors"))) == 1


def test_cache_interrupted_write_leaves_no_file(tree: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted cache write leaves no file behind."""
    def interrupted(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        load_dataset(str(tree), cache_dir=cache)
    assert list((cache / "tensors").iterdir()) == []


def test_cache_ignores_corrupt_file(tree: Path, tmp_path: Path) -> None:
    """A corrupt cache file is ignored and the source decoded again."""
    cache = tmp_path / "cache"
    first = load_dataset(str(tree), cache_dir=cache)
    (path,) = (cache / "tensors").iterdir()
    path.write_bytes(b"\x00" * 16)
    assert_same(first, load_dataset(str(tree), cache_dir=cache))


# ----------------------------------------------------------------------------- registry


def test_known_names_and_help() -> None:
    """Every known name appears in the help text."""
    assert {"shapes", "cifar10", "cifar100", "imagenet-subset"} <= set(KNOWN_DATASETS)
    text = dataset_choices_help()
    assert all(name in text for name in KNOWN_DATASETS) and "path" in text


def test_load_shapes_by_name(tmp_path: Path) -> None:
    """The built-in shapes set loads by name, subsampled, without caching."""
    ds = load_dataset("shapes", cache_dir=tmp_path, image_size=16, max_train=100)
    assert ds.name == "shapes" and ds.image_size == 16 and ds.train_images.shape[0] == 100
    assert torch.bincount(ds.train_labels).tolist() == [10] * 10
    assert not (tmp_path / "tensors").exists()  # shapes is never cached


def test_subsample_is_deterministic_balanced_and_ordered() -> None:
    """max_train subsets are deterministic and class balanced."""
    ds = make_shapes(num_train=300, num_test=10, image_size=8)
    a, b = subsample_train(ds, 50), subsample_train(ds, 50)
    assert torch.equal(a.train_images, b.train_images)
    counts = torch.bincount(a.train_labels, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    assert a.mean == ds.mean and a.test_images is ds.test_images
    assert subsample_train(ds, 1000) is ds


def test_unknown_name_lists_known_names(tmp_path: Path) -> None:
    """An unknown name raises a one-line DataError listing the choices."""
    with pytest.raises(DataError) as info:
        load_dataset("cifar1000", cache_dir=tmp_path)
    message = str(info.value)
    assert "cifar1000" in message and "cifar100" in message and "path" in message
    assert "\n" not in message and info.value.exit_code == 3


def test_missing_cifar_says_what_to_pass(tmp_path: Path) -> None:
    """A missing CIFAR source says which files --data-root should hold."""
    with pytest.raises(DataError, match=r"does not exist.*cifar100_png\.tar\.gz"):
        load_dataset("cifar100", data_root=tmp_path / "nope", cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"not found under .*cifar-100-python"):
        load_dataset("cifar100", data_root=tmp_path, cache_dir=tmp_path)


@pytest.mark.parametrize("case", ["no_train", "empty_class", "no_test", "unknown_test_class",
                                  "corrupt", "not_an_archive"])
def test_bad_image_folders_raise_data_error(tmp_path: Path, case: str) -> None:
    """Each malformed image folder raises a DataError saying what is wrong."""
    root = tmp_path / "bad"
    target = root
    if case == "no_train":
        (root / "images").mkdir(parents=True)
        expected = "no train/"
    else:
        write_tree(root, per_class=2)
        expected = {"empty_class": "have no images", "no_test": "no test split",
                    "unknown_test_class": "not in train/", "corrupt": "cannot decode",
                    "not_an_archive": "neither a directory"}[case]
    if case == "empty_class":
        (root / "train" / "dog").mkdir()
    elif case == "no_test":
        for path in (root / "val").rglob("*.*"):
            path.unlink()
    elif case == "unknown_test_class":
        (root / "val" / "dog").mkdir()
        Image.new("RGB", (12, 12)).save(root / "val" / "dog" / "0.png")
    elif case == "corrupt":
        (root / "train" / "ant" / "broken.png").write_bytes(b"not a png")
    elif case == "not_an_archive":
        target = tmp_path / "data.zip"
        target.write_bytes(b"zip")
    with pytest.raises(DataError, match=expected):
        load_dataset(str(target), cache_dir=tmp_path / "cache")


def test_bad_options_raise_config_error(tmp_path: Path) -> None:
    """Invalid options raise ConfigError."""
    with pytest.raises(ConfigError, match="max_train"):
        load_dataset("shapes", cache_dir=tmp_path, max_train=0)
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("shapes", cache_dir=tmp_path, image_size=0)
    with pytest.raises(ConfigError, match="classes"):
        load_dataset("cifar10", cache_dir=tmp_path, classes="imagenette")


def test_cifar_image_folder_under_data_root_uses_reference_stats(tmp_path: Path) -> None:
    """cifar10 at 32 px uses method.md statistics; other sizes compute them."""
    write_tree(tmp_path / "root" / "cifar10", size=32, per_class=2)
    ds = load_dataset("cifar10", data_root=tmp_path / "root", cache_dir=tmp_path / "cache")
    assert ds.name == "cifar10" and (ds.mean, ds.std) == REFERENCE_STATS[("cifar10", 32)]
    assert ds.classes == ["ant", "bee", "cat"]
    resized = load_dataset("cifar10", data_root=tmp_path / "root", cache_dir=tmp_path / "cache",
                           image_size=16)
    assert (resized.mean, resized.std) == channel_stats(resized.train_images)


def test_cifar_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Torchvision's CIFAR files are read without download and converted to CHW."""
    import torchvision

    gen = np.random.default_rng(0)
    fake_data = {train: gen.integers(0, 256, (6 if train else 3, 32, 32, 3), dtype=np.uint8)
                 for train in (True, False)}
    calls: list[bool] = []

    def fake_cifar(root: str, train: bool = True, download: bool = False) -> SimpleNamespace:
        calls.append(download)
        return SimpleNamespace(data=fake_data[train], targets=[i % 2 for i in range(
            len(fake_data[train]))], classes=["airplane", "automobile"])

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar)
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    ds = load_dataset("cifar10", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert calls == [False, False]
    assert torch.equal(ds.train_images, torch.from_numpy(fake_data[True]).permute(0, 3, 1, 2))
    assert ds.train_labels.tolist() == [0, 1, 0, 1, 0, 1] and ds.classes[0] == "airplane"
    small = load_dataset("cifar10", data_root=tmp_path, cache_dir=tmp_path / "cache",
                         image_size=8)
    assert small.train_images.shape == (6, 3, 8, 8)


def test_imagenet_subset_from_tree_and_class_file(tmp_path: Path) -> None:
    """imagenet-subset reads Imagenette classes, or a subset from a class file."""
    root = tmp_path / "root"
    wnids = registry_mod.IMAGENETTE_WNIDS
    for split in ("train", "test"):
        for index, wnid in enumerate(wnids):
            folder = root / "imagenette_tiny" / split / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (10, 10), (index * 20, 0, 0)).save(folder / "a.JPEG")
    ds = load_dataset("imagenet-subset", data_root=root, cache_dir=tmp_path / "cache",
                      image_size=8)
    assert ds.name == "imagenet-subset" and ds.classes == sorted(wnids)
    assert ds.train_images.shape == (10, 3, 8, 8)
    chosen = tmp_path / "subset.txt"
    chosen.write_text(f"{wnids[5]}\tFrench_horn\n{wnids[0]}\ttench\n")
    sub = load_dataset("imagenet-subset", data_root=root, cache_dir=tmp_path / "cache",
                       image_size=8, classes=chosen)
    assert sub.classes == ["tench", "French_horn"] and sub.train_labels.tolist() == [0, 1]
    with pytest.raises(DataError, match="standard subset"):
        load_dataset("imagenet-subset", data_root=root, cache_dir=tmp_path, classes="nope")


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED_DATASETS / "cifar100_png.tar.gz").is_file(),
                    reason="shared CIFAR-100 archive not available")
def test_real_cifar100_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared CIFAR-100 archive decodes to the official split and is cached."""
    # Uses the documented cache ($SSDD_CACHE or ~/.cache/ssdd): decoded once per machine (~15 s),
    # then every run reads the cached tensors.
    first = load_dataset("cifar100", data_root=SHARED_DATASETS)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(registry_mod, "read_image_folder", broken)
    ds = load_dataset("cifar100", data_root=SHARED_DATASETS)
    assert_same(first, ds)
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert ds.classes[:2] == ["apple", "aquarium_fish"] and ds.classes[-1] == "worm"
    assert torch.bincount(ds.train_labels).tolist() == [500] * 100
    assert torch.bincount(ds.test_labels).tolist() == [100] * 100
    assert (ds.mean, ds.std) == REFERENCE_STATS[("cifar100", 32)]
    mean, _ = channel_stats(ds.train_images)
    assert np.allclose(mean, ds.mean, atol=1e-3)


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit grayscale PNG at half intensity decodes to mid-gray (PIL's plain convert would give white)."""
    from ssdd_cli.data.folder import decode_image

    path = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)).save(path)  # 32896 = 128 * 257
    assert Image.open(path).mode.startswith("I")
    pixels = decode_image(path, None)
    assert pixels.shape == (8, 8, 3) and int(pixels.min()) == int(pixels.max()) == 128
