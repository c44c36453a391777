"""The public, typed Python API of ssdd. It owns every policy; the CLI only parses and renders.

Building blocks::

    from ssdd_cli import api
    dev = api.resolve_device("auto")
    data = api.load_dataset("cifar100", data_root="../shared/datasets")
    teacher = api.load_teacher("teacher.safetensors", dev)
    result = api.distill(data, teacher, api.distill_config("boost", budget=100), device=dev)
    api.save_distilled(result, "set.safetensors")
    images, targets = api.expand_pairs(api.load_bundle("set.safetensors"))

Whole commands, one call each, with the CLI's behaviour (defaults from the bundle, the cached
teacher, output checks before any work): :func:`teacher_to_file`, :func:`import_teacher_to_file`,
:func:`distill_to_file`, :func:`inspect_bundle`, :func:`expand_bundle`, :func:`evaluate_bundle`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import augment, distributed
from .bundle import Bundle, BundleMeta, load_bundle, load_tensors, save_bundle, save_tensors, tensor_checksum
from .checkpoint import Checkpointing, checkpoint_path
from .config import (
    DistillConfig,
    EvalConfig,
    TeacherConfig,
    distill_config,
    eval_config,
    make_config,
    teacher_config,
    to_dict,
)
from .data import ImageDataset, load_dataset
from .data.registry import DEFAULT_IMAGE_SIZE, REFERENCE_STATS
from .device import resolve_device, use_amp
from .errors import BundleError, ConfigError, OutputError
from .evaluate import (
    BundleDataset,
    EvalReport,
    EvalRow,
    evaluate,
    evaluate_pairs,
    linear_probe,
    random_pairs,
    teacher_probe_accuracy,
)
from .evaluate.runner import baseline_pairs
from .expand import expand_pairs, write_expanded
from .methods.distill import DistillResult, check_teacher, plan_distillation, run_identity
from .methods.distill import distill as _distill_loop
from .methods.registry import get_method, list_methods
from .models import check_model_name
from .paths import atomic_file, cache_dir, check_output, output_errors
from .reporting import NullReporter, ProgressReporter
from .storage import SizePlan
from .teacher import Teacher, import_checkpoint, load_teacher, save_teacher, train_teacher

log = logging.getLogger(__name__)

__all__ = [
    "Bundle", "BundleDataset", "BundleMeta", "DataOptions", "DistillConfig", "DistillResult", "EvalConfig", "EvalReport", "EvalRow",
    "ImageDataset", "Teacher", "TeacherConfig", "TeacherRun", "default_teacher_path", "distill", "distill_config",
    "distill_to_file", "eval_config", "evaluate", "evaluate_bundle", "evaluate_pairs", "expand_bundle", "expand_pairs",
    "get_method", "import_checkpoint", "import_teacher_to_file", "inspect_bundle", "linear_probe", "list_methods",
    "load_bundle", "load_dataset", "load_teacher", "make_config", "make_teacher", "plan_distillation", "random_pairs",
    "resolve_device", "resolve_teacher", "save_bundle", "save_distilled", "save_teacher", "teacher_config",
    "teacher_probe_accuracy", "teacher_representations", "teacher_to_file", "teacher_view_cache", "train_teacher",
    "write_expanded",
]


@dataclass(frozen=True)
class DataOptions:
    """Where and how datasets are read (the CLI's ``--data-root``, ``--cache-dir``, ...)."""

    data_root: str | Path | None = None
    cache_dir: str | Path | None = None
    image_size: int | None = None  # None: the dataset's default (32; 64 for imagenet-subset; a folder's own)
    classes: str | None = None
    download: bool = False

    def load(self, name: str, *, image_size: int | None = None, reporter: ProgressReporter | None = None) -> ImageDataset:
        """The dataset ``name`` at ``image_size`` (default: this object's)."""
        return load_dataset(name, data_root=self.data_root, cache_dir=self.cache_dir,
                            image_size=image_size or self.image_size, classes=self.classes, download=self.download,
                            reporter=reporter)

    def expected_image_size(self, name: str) -> int:
        """The size ``name`` will load at, known before loading (32 for a folder of unknown size)."""
        return self.image_size or DEFAULT_IMAGE_SIZE.get(name.lower(), 32)


# ---------------------------------------------------------------------------------------------
# teachers


def default_teacher_path(dataset: str, image_size: int, cache: str | Path | None = None) -> Path:
    """Where ``ssdd teacher DATASET`` stores its teacher when no ``-o`` is given."""
    safe = dataset.replace("/", "_").replace(":", "_")
    return cache_dir(cache) / "teachers" / f"{safe}-{image_size}px.safetensors"


def resolve_teacher(path: str | Path | None, dataset: ImageDataset, *, device: torch.device,
                    cache: str | Path | None = None) -> Teacher:
    """The teacher at ``path``, else the cached one of ``ssdd teacher DATASET``, on ``device``, checked against the data.

    Raises:
        ConfigError: no teacher given and none cached, or a teacher at another resolution.
        BundleError: an unreadable teacher file.
    """
    if path is None:
        path = default_teacher_path(dataset.name, dataset.image_size, cache)
        if not path.exists():
            raise ConfigError(f"no teacher for {dataset.name} at {dataset.image_size}px; run "
                              f"`ssdd teacher {dataset.name}` first or pass --teacher FILE")
    teacher = load_teacher(path, device)
    check_teacher(teacher, dataset)
    return teacher


def _cache_key(teacher: Teacher, dataset: ImageDataset) -> str:
    """File-name key of a cache derived from a teacher and data: their content hashes (the name is for people)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name).strip("_")[:40] or "data"
    return f"{readable}-{(teacher.sha256 or 'unsaved')[:16]}-{dataset.fingerprint()[:16]}"


def teacher_representations(teacher: Teacher, dataset: ImageDataset, *, cache: str | Path | None = None,
                            reporter: ProgressReporter | None = None) -> torch.Tensor:
    """Teacher representations of every training image (fp32), cached on disk by content.

    The cache key is the teacher file's SHA-256 and the images' own fingerprint (never the dataset's
    name), so edited or different data with the same name gets its own entry.
    """
    path = None
    if teacher.sha256:
        path = cache_dir(cache) / "reprs" / f"{_cache_key(teacher, dataset)}.safetensors"
        if path.exists():
            try:
                return load_tensors(path)[0]["reprs"]
            except (BundleError, KeyError):
                log.warning("ignoring unreadable representation cache %s", path)
    reps = teacher.represent(dataset.train_images, reporter=reporter, amp=False).cpu()
    if path is not None:
        try:
            save_tensors(path, {"reprs": reps})
        except OSError as exc:  # a cache only saves time: a full or read-only disk never stops the run
            log.warning("could not write the representation cache %s (%s); continuing without it", path, exc)
    return reps


def teacher_view_cache(teacher: Teacher, dataset: ImageDataset, num_views: int, *, cache: str | Path | None = None,
                       reporter: ProgressReporter | None = None, amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher cache: every training image under ``num_views`` fixed crop+flip views (plus itself).

    The views' parameters come from a fixed stream (the same for every run seed, so paired runs share the
    cache); the teacher's representations of all ``n·(K+1)`` images are computed once on its device (bf16
    where fast, unless ``amp`` says otherwise), stored as float16 in the cache keyed by the teacher's hash, the
    images' fingerprint and K, and looked up by the outer loop instead of a teacher forward per step.

    Returns:
        ``views (n, K+1, 3)`` int64 crop+flip parameters (slot 0: the image itself) and ``targets
        (n, K+1, D)`` float16.
    """
    from . import augment
    from .rng import stream

    n, k = dataset.train_images.shape[0], num_views
    gen = stream(0, f"teacher-cache-views-{k}", "cpu")
    identity = torch.tensor([4, 4, 0]).expand(n, 1, 3)
    views = torch.cat([identity, augment.crop_flip_params(n * k, gen).view(n, k, 3)], 1).contiguous()
    path = cache_dir(cache) / "teacher-views" / f"{_cache_key(teacher, dataset)}-k{k}.safetensors"
    if teacher.sha256 and path.exists():
        try:
            stored = load_tensors(path)[0]
            if torch.equal(stored["views"], views):
                return views, stored["targets"]
        except (BundleError, KeyError):
            log.warning("ignoring unreadable teacher cache %s", path)
    device = teacher.device
    out = torch.empty(n, k + 1, teacher.repr_dim, dtype=torch.float16)
    reporter = reporter or NullReporter()
    reporter.start(f"teacher cache ({k} views + the image)", n)
    with torch.no_grad():
        for i in range(0, n, 512):
            x = augment.to_float(dataset.train_images[i : i + 512].to(device))
            for slot in range(k + 1):
                xa = augment.normalize(augment.crop_flip_at(x, views[i : i + 512, slot].to(device)), dataset.mean, dataset.std)
                out[i : i + 512, slot] = teacher.represent_normalized(xa, amp).half().cpu()
            reporter.advance(x.shape[0])
    reporter.stop()
    if teacher.sha256:
        try:
            save_tensors(path, {"views": views, "targets": out})
        except OSError as exc:
            log.warning("could not write the teacher cache %s (%s); continuing without it", path, exc)
    return views, out


def make_teacher(dataset: ImageDataset, config: TeacherConfig, *, device: torch.device,
                 probe: EvalConfig | None = None, reporter: ProgressReporter | None = None,
                 checkpointing: Checkpointing | None = None) -> Teacher:
    """Train a Barlow Twins teacher on ``dataset``; with ``probe``, record its linear-probe accuracy on it."""
    teacher, _ = train_teacher(dataset.train_images, mean=dataset.mean, std=dataset.std, config=config,
                               device=device, dataset_name=dataset.name, reporter=reporter, checkpointing=checkpointing)
    if probe is not None and distributed.is_main():  # under torchrun only rank 0 writes the teacher
        # a short run gets a short probe: twice its own length, at least 200 steps, at most the configured probe
        probe = make_config(EvalConfig, {**to_dict(probe),
                                         "probe_steps": min(probe.probe_steps, max(200, 2 * teacher.meta["steps_done"]))})
        teacher.to(device)
        acc = teacher_probe_accuracy(teacher, dataset, probe, device=device, reporter=reporter)
        teacher.meta.update(probe_accuracy=round(acc, 2), probe_target=dataset.name, probe_steps=probe.probe_steps)
    return teacher


@dataclass
class TeacherRun:
    """A teacher written to a file."""

    teacher: Teacher
    path: Path


def teacher_to_file(dataset: str, *, output: str | Path | None = None, data: DataOptions = DataOptions(),
                    preset: str = "paper", settings: Mapping[str, Any] | None = None, probe: bool = True,
                    overwrite: bool = False, device: str = "auto", reporter: ProgressReporter | None = None,
                    checkpoint_every: int = 500, resume: bool = False) -> TeacherRun:
    """``ssdd teacher DATASET``: train a teacher and write it to ``output`` (default: the cache, for ``distill``).

    The run checkpoints beside the output every ``checkpoint_every`` steps and on SIGINT/SIGTERM;
    ``resume`` continues from that checkpoint (bit-identically on the same device). Under torchrun
    every process trains its part of each batch and rank 0 alone reports and writes.
    """
    reporter = reporter if reporter is not None and distributed.is_main() else NullReporter()
    config = teacher_config(preset, **(settings or {}))
    check_model_name(config.arch)
    if output is not None:  # the default path is known once the data is (its name and size)
        check_output(output, overwrite)
        check_checkpoint(output, resume, overwrite)
    dev = distributed.setup(device)
    with distributed.main_first():  # rank 0 decodes and caches the data, the others read the cache
        ds = data.load(dataset, reporter=reporter)
    target = Path(output) if output is not None else check_output(default_teacher_path(ds.name, ds.image_size, data.cache_dir), overwrite)
    ckpt_path = check_checkpoint(target, resume, overwrite)
    reporter.note(f"training {config.arch} teacher on {ds.name} ({ds.train_images.shape[0]:,} images, {ds.image_size}px) "
                  f"on {dev} for {config.num_steps:,} steps" + (f" or {config.max_minutes} min" if config.max_minutes else "")
                  + f": {config.optimizer} lr {config.lr:g}, batch {config.batch_size}, "
                  f"{'bf16' if use_amp(dev, config.amp) else 'fp32'}, {_threads()}, preset {preset}")
    if dev.type == "cpu" and preset == "paper":
        reporter.note("note: the paper preset (ResNet-18, LARS, 1000 epochs) is sized for GPUs; on a CPU --preset cpu "
                      "(docs/cpu-preset.md) trains a small ConvNet in minutes")
    ckpt = Checkpointing(ckpt_path, checkpoint_every, run_identity("teacher", config, ds), resume)
    teacher = make_teacher(ds, config, device=dev, probe=eval_config(preset) if probe else None, reporter=reporter,
                           checkpointing=ckpt)
    if distributed.is_main():
        save_teacher(teacher, target, overwrite=overwrite)
        ckpt.remove()
    return TeacherRun(teacher, target)


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}"


def check_checkpoint(output: str | Path, resume: bool, overwrite: bool) -> Path:
    """The checkpoint path beside ``output``, checked before any work.

    An earlier run's checkpoint is kept unless resumed or ``overwrite``; ``resume`` needs one.

    Raises:
        OutputError: a checkpoint of an interrupted run exists and neither ``resume`` nor ``overwrite`` is given.
        ConfigError: ``resume`` without a checkpoint.
    """
    path = checkpoint_path(output)
    if resume and not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}; run without --resume to start afresh")
    if not resume and os.path.lexists(path):
        if not overwrite:
            raise OutputError(f"{path} holds the checkpoint of an interrupted run; pass --resume to continue it "
                              "or --overwrite to start afresh")
        check_output(path, overwrite=True)  # a regular file only
    return path


def import_teacher_to_file(checkpoint: str | Path, output: str | Path, *, dataset: str | None = None,
                           data: DataOptions = DataOptions(), arch: str | None = None, stem_padding: int = 2,
                           overwrite: bool = False, reporter: ProgressReporter | None = None) -> TeacherRun:
    """``ssdd teacher --import CKPT``: convert a checkpoint, with ``dataset``'s normalisation (default CIFAR-100's)."""
    reporter = reporter or NullReporter()
    check_model_name(arch or "resnet18")
    check_output(output, overwrite)
    if dataset is not None:
        ds = data.load(dataset, reporter=reporter)
        name, size, mean, std = ds.name, ds.image_size, ds.mean, ds.std
    else:
        size = data.image_size or 32
        mean, std = REFERENCE_STATS[("cifar100", 32)]
        name = ""
        reporter.note("note: no DATASET given, so the teacher records CIFAR-100's normalisation; pass the dataset "
                      "the checkpoint was trained on to use its statistics")
    teacher = import_checkpoint(checkpoint, arch=arch or "resnet18", image_size=size, mean=mean, std=std,
                                stem_padding=stem_padding, dataset_name=name)
    save_teacher(teacher, output, overwrite=overwrite)
    return TeacherRun(teacher, Path(output))


# ---------------------------------------------------------------------------------------------
# distillation


def distill(dataset: ImageDataset, teacher: Teacher, config: DistillConfig, *, device: torch.device,
            cache: str | Path | None = None, plan: SizePlan | None = None,
            reporter: ProgressReporter | None = None, checkpointing: Checkpointing | None = None) -> DistillResult:
    """Distil ``dataset`` against ``teacher`` (moved to ``device``), with cached teacher representations where needed."""
    teacher.to(device)
    reprs = views = None
    with distributed.main_first():  # under torchrun rank 0 fills the caches, the others read them
        if get_method(config.method).wants_train_reprs(config):
            reprs = teacher_representations(teacher, dataset, cache=cache, reporter=reporter)
        if config.teacher_cache and get_method(config.method).trains and config.num_steps > 0:
            views = teacher_view_cache(teacher, dataset, config.teacher_cache, cache=cache, reporter=reporter,
                                       amp=config.amp)
    return _distill_loop(dataset, teacher, config, device=device, train_reprs=reprs, plan=plan, reporter=reporter,
                         checkpointing=checkpointing, teacher_views=views)


def save_distilled(result: DistillResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a distillation result as a bundle."""
    return save_bundle(path, result.tensors, result.meta, overwrite=overwrite)


def distill_to_file(
    dataset: str,
    output: str | Path,
    *,
    method: str = "boost",
    preset: str = "paper",
    settings: Mapping[str, Any] | None = None,
    teacher: str | Path | None = None,
    data: DataOptions = DataOptions(),
    overwrite: bool = False,
    device: str = "auto",
    reporter: ProgressReporter | None = None,
    on_plan: Callable[[SizePlan, DistillConfig], None] | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
) -> DistillResult:
    """``ssdd distill``: validate everything, load the data and the teacher, plan, distil, write the bundle.

    The configuration (``settings`` over the preset), the output path and the architecture are checked
    before any data loads; the storage plan goes to ``on_plan`` before any work. The outer loop
    checkpoints beside the output every ``checkpoint_every`` steps and on SIGINT/SIGTERM; ``resume``
    continues from that checkpoint (bit-identically on the same device). Under torchrun each outer
    step's real batch is split over the processes and rank 0 alone reports and writes.
    """
    reporter = reporter if reporter is not None and distributed.is_main() else NullReporter()
    settings = dict(settings or {})
    method = settings.pop("method", method)
    config = distill_config(method, preset, data.expected_image_size(dataset), **settings)
    check_output(output, overwrite)
    check_model_name(config.pool_arch)
    ckpt_path = check_checkpoint(output, resume, overwrite)
    dev = distributed.setup(device)
    with distributed.main_first():
        ds = data.load(dataset, reporter=reporter)
    if ds.image_size != data.expected_image_size(dataset):  # a folder at its own size: size-dependent presets
        config = distill_config(method, preset, ds.image_size, **settings)
    t = resolve_teacher(teacher, ds, device=dev, cache=data.cache_dir)
    plan = plan_distillation(config, ds, t.repr_dim)
    if on_plan is not None and distributed.is_main():
        on_plan(plan, config)
    entry = get_method(config.method)
    if not entry.trains:
        steps = "no outer loop"
    elif config.num_steps == 0:
        steps = "no outer steps (the initialised set; --steps N runs the outer loop)"
    else:
        steps = (f"{config.num_steps:,} steps" + (f" or {config.max_minutes} min" if config.max_minutes else "")
                 + f", lr {config.lr:g}, batch {config.batch_size}, pool {config.pool_size}×{config.pool_arch}, "
                 f"{'bf16' if use_amp(dev, config.amp) else 'fp32'}, {_threads()}")
    reporter.note(f"distilling {ds.name} with {config.method} on {dev}: m={plan.size.num_images}, "
                  f"views={','.join(config.views)}, {steps}, preset {preset}")
    if dev.type == "cpu" and preset == "paper" and entry.trains:
        reporter.note("note: the paper preset (ConvNet pool of 10, real batch 1024) is sized for GPUs; on a CPU "
                      "--preset cpu (docs/cpu-preset.md) is several times faster per step")
    ckpt = Checkpointing(ckpt_path, checkpoint_every, run_identity("distill", config, ds, t), resume)
    result = distill(ds, t, config, device=dev, cache=data.cache_dir, plan=plan, reporter=reporter, checkpointing=ckpt)
    if distributed.is_main():
        save_distilled(result, output, overwrite=overwrite)
        ckpt.remove()
    return result


# ---------------------------------------------------------------------------------------------
# inspect and expand


def inspect_bundle(path: str | Path, *, verify: bool = False, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Summary of a bundle: metadata, tensors, storage breakdown; ``verify`` also rebuilds every pair.

    Raises:
        BundleError: unreadable or invalid bundle, or (with ``verify``) a failed check.
    """
    bundle = load_bundle(path)
    storage = bundle.storage()
    meta = bundle.meta
    summary: dict[str, Any] = {
        "path": str(path),
        "format_version": meta.format_version,
        "method": bundle.method,
        "source": meta.source,
        "image_shape": list(bundle.image_shape),
        "image_space": meta.image_space,
        "basis_size": bundle.basis_size,
        "views": bundle.views,
        "num_images": bundle.num_images,
        "num_pairs": bundle.num_images * len(bundle.views),
        "repr_dim": bundle.repr_dim,
        "counts": meta.counts,
        "budget": meta.budget,
        "storage": storage.to_dict(),
        "teacher": to_dict(meta.teacher),
        "mean": bundle.mean,
        "std": bundle.std,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in bundle.tensors.items()},
        "fit": meta.fit,
        "config": meta.config,
        "ssdd_version": meta.ssdd_version,
        "created": meta.created,
        "checksum": meta.checksum,
    }
    if verify:
        checks: dict[str, bool] = {}
        if meta.checksum is not None:  # v1 bundles carry none
            checks["checksum matches the tensor data"] = tensor_checksum(bundle.tensors) == meta.checksum
        checks["storage matches metadata"] = abs(float(meta.storage.get("cost", -1)) - storage.cost) < 1e-3
        checks["within budget"] = storage.fits(meta.budget)
        images, targets = expand_pairs(bundle, device=resolve_device(device) if isinstance(device, str) else device)
        checks["pairs finite"] = bool(torch.isfinite(images).all() and torch.isfinite(targets).all())
        checks["pair count"] = images.shape[0] == summary["num_pairs"] == targets.shape[0]
        summary["verify"] = checks
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            raise BundleError(f"{path}: verification failed ({', '.join(failed)}); re-create the bundle")
    return summary


def expand_bundle(path: str | Path, output: str | Path, *, views: str | list[str] | None = None,
                  device: str = "auto", overwrite: bool = False, write_images: bool = True) -> dict[str, Any]:
    """``ssdd expand``: every view's image and target as PNGs, ``pairs.safetensors`` and a manifest.

    Returns:
        The manifest, with ``seconds`` added.
    """
    t0 = time.perf_counter()
    bundle = load_bundle(path)
    manifest = write_expanded(bundle, output, views=views, device=resolve_device(device), overwrite=overwrite,
                              write_images=write_images)
    return {**manifest, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass
class EvalRequest:
    """What ``ssdd evaluate`` compares; ``None``/empty fields default from the (first) bundle.

    Rows: each bundle, then each baseline (``random`` or another method without an outer loop: N real
    images with teacher targets, drawn per seed; ``full``: the whole source with teacher targets), the
    no-pretraining floor and the teacher's own features. Every row is pretrained per architecture and
    seed and evaluated on every target with every protocol of the :class:`EvalConfig`.
    """

    bundles: list[str | Path] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # probe datasets (default: the bundle's source)
    source: str | None = None  # dataset of the baselines (default: the bundle's source)
    teacher: str | Path | None = None  # default: the teacher recorded in the bundle
    budget: int | None = None  # of the random baseline (default: the bundle's)
    baselines: list[str] = field(default_factory=list)
    floor: bool = True
    teacher_probe: bool = True
    report_path: str | Path | None = None  # also write the report as JSON here
    report_dir: str | Path | None = None  # report.md, report.json and PNG figures
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)


#: the baseline that pretrains on the whole source (not a method: nothing is selected or stored)
FULL_BASELINE = "full"
#: fewest training images per class a target needs for a meaningful probe
MIN_PER_CLASS = 2


def check_target(dataset: ImageDataset, name: str) -> None:
    """A target needs a test split and at least :data:`MIN_PER_CLASS` training images in every class.

    Raises:
        DataError: which of the two is missing, and how to fix it.
    """
    from .errors import DataError

    if dataset.test_images.shape[0] == 0:
        raise DataError(f"target {name} has no test split; give it test/ (or val/) class folders beside train/")
    counts = torch.bincount(dataset.train_labels, minlength=dataset.num_classes)
    if int(counts.min()) < MIN_PER_CLASS:
        cls = dataset.classes[int(counts.argmin())]
        raise DataError(f"target {name}: class {cls!r} has {int(counts.min())} training image(s); every class needs "
                        f"at least {MIN_PER_CLASS} for a probe: add images or drop the class")


def _check_baselines(baselines: list[str]) -> None:
    choices = [FULL_BASELINE, *(m for m in list_methods() if not get_method(m).trains)]
    for b in baselines:
        if b == "none":
            raise ConfigError("--baseline none cannot be combined with other baselines; drop it")
        if b != FULL_BASELINE and b.replace("-", "_") not in list_methods():
            raise ConfigError(f"unknown baseline {b!r}; choose one of: {', '.join(choices)} (or none)")
        if b != FULL_BASELINE and get_method(b).trains:
            raise ConfigError(f"--baseline {b} distils; baselines are {FULL_BASELINE}, "
                              + ", ".join(m for m in list_methods() if not get_method(m).trains) + " (or none)")


def _row_names(bundles: list[Bundle], paths: list[str | Path]) -> list[str]:
    """``method (N=..)`` per bundle; the file name is added where two would read the same."""
    names = [f"{b.method.replace('_', '-')} (N={b.meta.budget})" for b in bundles]
    files = [Path(p).name for p in paths]
    return [(f"{n} {f}" if files.count(f) == 1 else f"{n} {p}") if names.count(n) > 1 else n
            for n, f, p in zip(names, files, paths, strict=True)]


def evaluate_bundle(request: EvalRequest, config: EvalConfig, *, device: str = "auto",
                    reporter: ProgressReporter | None = None) -> EvalReport:
    """``ssdd evaluate``: pretrain on each bundle's pairs (and the baselines'), evaluate on each target, compare.

    Under torchrun the (row, architecture, seed) runs are dealt out round-robin over the processes and
    their results gathered on rank 0, which alone reports and writes; the table is the one-process table.

    Raises:
        ConfigError: nothing to evaluate, bundles of different resolutions, or a baseline without the
            teacher, source or budget it needs.
        DataError: a target without a test split or with too few images in a class.
    """
    from .evaluate.runner import RowSpec, fixed_pairs

    reporter = reporter if reporter is not None and distributed.is_main() else NullReporter()
    _check_evaluate_paths(request)
    config = replace(config, archs=tuple(dict.fromkeys(config.archs)), protocols=tuple(dict.fromkeys(config.protocols)))
    for out, kind in ((request.report_path, "file"), (request.report_dir, "dir")):
        if out is not None:
            check_output(out, request.overwrite, kind=kind, protect=request.bundles)
    for arch in config.archs:
        check_model_name(arch)
    _check_baselines(request.baselines)
    if not request.bundles and not request.baselines:
        raise ConfigError("give a BUNDLE, or --baseline random with --teacher and --source")
    dev = distributed.setup(device)
    bundles = [load_bundle(b) for b in request.bundles]
    sizes = {b.meta.image_size for b in bundles}
    if len(sizes) > 1:
        raise ConfigError(f"the bundles have different resolutions ({', '.join(f'{s} px' for s in sorted(sizes))}); "
                          "evaluate bundles of one resolution together")
    first = bundles[0] if bundles else None
    teacher = _evaluation_teacher(request, first, dev, reporter)
    src_name = request.source or (first.meta.source if first is not None else None)
    tgt_names = request.targets or ([src_name] if src_name else [])
    if not tgt_names:
        raise ConfigError("give --target (or --source) for the baseline")
    size = first.meta.image_size if first is not None else (teacher.image_size if teacher else None)
    n = request.budget or (first.meta.budget if first is not None else None)
    if request.budget is None and len({b.meta.budget for b in bundles}) > 1 and request.baselines:
        reporter.note(f"warning: the bundles have different budgets; the baselines use the first one's, N={n} "
                      "(pass --budget N to choose)")
    if any(b != FULL_BASELINE for b in request.baselines):
        if n is None:
            raise ConfigError(f"--baseline {request.baselines[0]} needs --budget N (or a bundle)")
        for b in request.baselines:
            if b != FULL_BASELINE:
                distill_config(b, budget=n)  # validates N before any work
    for arch in config.archs:  # an architecture that cannot take this size fails before any data loads
        create_model_check(arch, size or 32)
    loaded = []
    with distributed.main_first():  # rank 0 decodes and caches the targets, the others read the cache
        for name in dict.fromkeys(tgt_names):
            loaded.append(request.data.load(name, image_size=size, reporter=reporter))
    targets = [_subsampled(t, config) for t in loaded]  # the probe's copies; baselines draw from the whole source
    for target, name in zip(targets, dict.fromkeys(tgt_names), strict=True):
        check_target(target, name)
    if len({t.name for t in targets}) < len(targets):
        raise ConfigError("two targets have the same name (" + ", ".join(t.name for t in targets) + "); rename a folder")
    rows = [RowSpec(name, "bundle", fixed_pairs(*BundleDataset(b, device=dev).tensors()),
                    f"{b.num_images * len(b.views)} pairs ({b.num_images} images × {len(b.views)} view(s)) from {Path(p).name}")
            for name, b, p in zip(_row_names(bundles, request.bundles), bundles, request.bundles, strict=True)]
    if request.baselines:
        source = next((t for t in loaded if t.name == src_name), None) if src_name else None
        with distributed.main_first():
            source = source or request.data.load(src_name, image_size=size, reporter=reporter)
        rows += [_baseline_row(b, source, teacher, n, config, dev, request, reporter) for b in request.baselines]
    if request.floor:
        rows.append(RowSpec("no pretraining (floor)", "floor", None, "random initialisation, same protocol"))
    if request.teacher_probe and teacher is not None and teacher.image_size == size:
        rows.append(RowSpec(f"teacher {teacher.arch} (own features)", "teacher", None,
                            "the teacher's representation, linear probe / k-NN only"))
    _unique_names(rows)
    reporter.note(f"evaluating {len(rows)} row(s) × {', '.join(config.archs)} on {', '.join(t.name for t in targets)} "
                  f"({', '.join(config.protocols)}): {config.pretrain_epochs} pretraining epochs, {config.num_seeds} "
                  f"seed(s), device {dev}")
    shard = (distributed.rank(), distributed.world_size())
    report = evaluate(targets, rows, config, device=dev, teacher=teacher, reporter=reporter, shard=shard,
                      gather=_gather_results if distributed.active() else None)
    if distributed.is_main():
        _write_reports(report, request, list(zip([r.name for r in rows[:len(bundles)]], bundles, strict=True)), reporter)
    return report


def _evaluation_teacher(request: EvalRequest, bundle: Bundle | None, device: torch.device,
                        reporter: ProgressReporter) -> Teacher | None:
    """The teacher given, else the one the (first) bundle records (when its file is still there)."""
    recorded = bundle.meta.teacher.path if bundle is not None else None
    path = Path(request.teacher) if request.teacher is not None else (Path(recorded) if recorded else None)
    if path is not None and path.exists():
        teacher = load_teacher(path, device)
        if bundle is not None and bundle.meta.teacher.sha256 not in (None, teacher.sha256):
            reporter.note(f"warning: teacher {path} differs from the one the bundle was distilled with")
        return teacher
    if request.teacher is not None:
        raise ConfigError(f"--teacher {request.teacher}: no such file")
    if request.baselines:
        raise ConfigError(f"the {request.baselines[0]} baseline needs the teacher: pass --teacher FILE"
                          + (f" (the bundle's teacher {path} is missing)" if path else ""))
    return None


def _gather_results(mine: list[Any]) -> list[Any]:
    """Every process's ``(seed, result)`` list on rank 0 (empty elsewhere)."""
    parts = distributed.gather_objects(mine)
    return [item for part in parts or [] for item in part]


def create_model_check(arch: str, size: int) -> None:
    """Build ``arch`` at ``size`` once on the CPU, so a size it cannot take fails before any work."""
    from .models import create_model

    create_model(arch, image_size=size)


def _check_evaluate_paths(request: EvalRequest) -> None:
    """Each bundle once; ``--json`` neither a bundle nor inside the ``--report`` folder."""
    seen: dict[Path, str | Path] = {}
    for b in request.bundles:
        key = Path(b).resolve()
        if key in seen:
            raise ConfigError(f"bundle {b} is given twice; give each bundle once")
        seen[key] = b
    if request.report_path is not None:
        json_path = Path(request.report_path).resolve()
        if json_path in seen:
            raise ConfigError(f"--json {request.report_path} is an input bundle; choose another file")
        if request.report_dir is not None and Path(request.report_dir).resolve() in json_path.parents:
            raise ConfigError(f"--json {request.report_path} is inside the --report folder; the folder already "
                              "holds report.json")


def _unique_names(rows: list[Any]) -> None:
    """Rows are told apart by name: a repeated name (a random bundle beside the random baseline) gets ``#2``, ..."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.name] = counts.get(row.name, 0) + 1
        if counts[row.name] > 1:
            row.name = f"{row.name} #{counts[row.name]}"


def _subsampled(target: ImageDataset, config: EvalConfig) -> ImageDataset:
    from .data.registry import subsample_test, subsample_train

    if config.max_train_images:
        target = subsample_train(target, config.max_train_images)
    return subsample_test(target, config.max_test_images) if config.max_test_images else target


def _baseline_row(name: str, source: ImageDataset, teacher: Teacher | None, budget: int | None, config: EvalConfig,
                  device: torch.device, request: EvalRequest, reporter: ProgressReporter) -> Any:
    """A baseline's row: N real images per seed (a method's selection), or the whole source (``full``)."""
    from .evaluate.runner import RowSpec

    if teacher is None:
        raise ConfigError(f"the {name} baseline needs the teacher: pass --teacher FILE")
    if name == FULL_BASELINE:
        held: list[tuple[torch.Tensor, torch.Tensor]] = []

        def everything(_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
            if not held:  # built on first use, kept for every later seed and architecture
                reps = teacher_representations(teacher, source, cache=request.data.cache_dir, reporter=reporter)
                images = augment.normalize(augment.to_float(source.train_images), source.mean, source.std)
                held.append((images, reps))
            return held[0]

        return RowSpec(f"full source ({source.train_images.shape[0]:,} images)", "full", everything,
                       f"every {source.name} training image with teacher targets, {config.full_epochs} epochs",
                       epochs=config.full_epochs)
    assert budget is not None

    def pairs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return baseline_pairs(name, source, teacher, budget, seed=seed, device=device)

    return RowSpec(f"{name} (N={budget})", "baseline", pairs, f"{budget} {source.name} images per seed, teacher targets")


def _write_reports(report: EvalReport, request: EvalRequest, bundles: list[tuple[str, Bundle]],
                   reporter: ProgressReporter) -> None:
    """``--json FILE`` and ``--report DIR`` (Markdown, JSON and figures; atomic, with an ssdd manifest)."""
    from .evaluate.figures import write_figures
    from .paths import MANIFEST, REPORT_TAG, atomic_dir

    data = report.to_dict()
    if request.report_path is not None:
        with output_errors(request.report_path), atomic_file(request.report_path) as tmp:
            tmp.write_text(json.dumps(data, indent=1))
    if request.report_dir is not None:
        with output_errors(request.report_dir), atomic_dir(request.report_dir, request.overwrite,
                                                           protect=request.bundles) as tmp:
            (tmp / "report.json").write_text(json.dumps(data, indent=1))
            figures, skipped = write_figures(report, tmp, bundles)
            md = report.to_markdown()
            if figures:
                md += "\nFigures:\n\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n"
            (tmp / "report.md").write_text(md)
            owned = ["report.json", "report.md", *figures]
            (tmp / MANIFEST).write_text(json.dumps({"written_by": REPORT_TAG, "owned": owned}, indent=1))
        for note in skipped:
            reporter.note(note)


# ---------------------------------------------------------------------------------------------
# environment


def environment_report(cache: str | Path | None = None) -> dict[str, Any]:
    """What a bug report needs: versions, devices and precision, threads, and the cache's place and size."""
    import platform
    import sys

    from . import __version__
    from .device import bf16_is_fast

    try:
        import torchvision

        tv = torchvision.__version__
    except Exception as exc:  # noqa: BLE001 - a broken torchvision is exactly what a report should show
        tv = f"not importable ({type(exc).__name__})"
    root = cache_dir(cache)
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    cuda = torch.cuda.is_available()
    return {
        "ssdd": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "torchvision": tv,
        "cuda": [f"{torch.cuda.get_device_name(i)} (bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'})"
                 for i in range(torch.cuda.device_count())] if cuda else [],
        "cpu": platform.processor() or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_fast": bf16_is_fast(torch.device("cpu")), "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "default_device": str(resolve_device("auto")),
        "cache": str(root), "cache_files": len(files), "cache_mb": round(sum(p.stat().st_size for p in files) / 1e6, 1),
    }
