"""The public, typed Python API of ssdd. The CLI is a thin layer over these functions.

Typical use::

    from ssdd_cli import api
    dev = api.resolve_device("auto")
    data = api.load_dataset("cifar100", data_root="../shared/datasets")
    teacher = api.load_teacher("teacher.safetensors", dev)
    result = api.distill(data, teacher, api.distill_config("boost", budget=100), device=dev)
    api.save_distilled(result, "set.safetensors")
    images, targets = api.expand_pairs(api.load_bundle("set.safetensors"))
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .bundle import Bundle, load_bundle, load_tensors, save_bundle, save_tensors
from .config import (
    DistillConfig,
    EvalConfig,
    TeacherConfig,
    distill_config,
    eval_config,
    teacher_config,
    to_dict,
)
from .data import ImageDataset, load_dataset
from .device import resolve_device
from .errors import BundleError, ConfigError
from .evaluate import extract_features, linear_probe, pretrain
from .expand import expand_pairs, synthetic_from_bundle, write_expanded
from .methods.distill import DistillResult, planned_storage
from .methods.distill import distill as _distill
from .methods.init import init_pixels, real_subset
from .paths import cache_dir, check_output
from .reporting import NullReporter, ProgressReporter
from .rng import derive_seed, stream
from .teacher import Teacher, import_checkpoint, load_teacher, save_teacher, train_teacher

log = logging.getLogger(__name__)

__all__ = [
    "Bundle", "DistillConfig", "DistillResult", "EvalConfig", "EvalReport", "ImageDataset", "Teacher", "TeacherConfig",
    "default_teacher_path", "distill", "distill_config", "eval_config", "evaluate", "expand_pairs", "import_checkpoint",
    "inspect_bundle", "linear_probe", "load_bundle", "load_dataset", "load_teacher", "make_teacher", "planned_storage",
    "random_baseline", "resolve_device", "save_distilled", "save_teacher", "teacher_config",
    "teacher_probe_accuracy", "teacher_representations", "train_teacher", "write_expanded",
]


# ---------------------------------------------------------------------------------------------
# teachers


def default_teacher_path(dataset: str, image_size: int, cache: str | Path | None = None) -> Path:
    """Where ``ssdd teacher DATASET`` stores its teacher when no ``-o`` is given."""
    safe = dataset.replace("/", "_").replace(":", "_")
    return cache_dir(cache) / "teachers" / f"{safe}-{image_size}px.safetensors"


def teacher_representations(teacher: Teacher, dataset: ImageDataset, *, cache: str | Path | None = None,
                            reporter: ProgressReporter | None = None, amp: bool | None = False) -> torch.Tensor:
    """Teacher representations of every training image, cached on disk by teacher hash."""
    path = None
    if teacher.sha256:
        n = dataset.train_images.shape[0]
        path = cache_dir(cache) / "reprs" / f"{teacher.sha256[:16]}-{dataset.name.replace('/', '_').replace(':', '_')}-{n}.safetensors"
        if path.exists():
            try:
                return load_tensors(path)[0]["reprs"]
            except BundleError:
                log.warning("ignoring unreadable representation cache %s", path)
    reps = teacher.represent(dataset.train_images, reporter=reporter, amp=amp).cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, {"reprs": reps})
    return reps


def teacher_probe_accuracy(teacher: Teacher, target: ImageDataset, config: EvalConfig, *, device: torch.device,
                           reporter: ProgressReporter | None = None) -> float:
    """Linear-probe accuracy (%) of the teacher's own representations on ``target``."""
    teacher.to(device)
    ftr = extract_features(teacher.model.represent, target.train_images, mean=target.mean, std=target.std,
                           device=device, amp=config.amp)
    fte = extract_features(teacher.model.represent, target.test_images, mean=target.mean, std=target.std,
                           device=device, amp=config.amp)
    return linear_probe(ftr, target.train_labels, fte, target.test_labels, num_steps=config.probe_steps,
                        batch_size=config.probe_batch_size, lr=config.probe_lr, seed=config.seed, device=device,
                        reporter=reporter)


def make_teacher(dataset: ImageDataset, config: TeacherConfig, *, device: torch.device,
                 reporter: ProgressReporter | None = None) -> Teacher:
    """Train a Barlow Twins teacher on ``dataset``'s training images."""
    teacher, _ = train_teacher(dataset.train_images, mean=dataset.mean, std=dataset.std, config=config,
                               device=device, dataset_name=dataset.name, reporter=reporter)
    return teacher


# ---------------------------------------------------------------------------------------------
# distillation


def distill(dataset: ImageDataset, teacher: Teacher, config: DistillConfig, *, device: torch.device,
            cache: str | Path | None = None, reporter: ProgressReporter | None = None) -> DistillResult:
    """Distil ``dataset`` (see :func:`ssdd_cli.methods.distill.distill`), reusing cached teacher representations."""
    reprs = None
    if config.method == "boost":
        reprs = teacher_representations(teacher.to(device), dataset, cache=cache, reporter=reporter, amp=False)
    return _distill(dataset, teacher, config, device=device, train_reprs=reprs, reporter=reporter)


def save_distilled(result: DistillResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a distillation result as a bundle."""
    return save_bundle(path, result.tensors, result.meta, overwrite=overwrite)


def random_baseline(dataset: ImageDataset, teacher: Teacher, budget: int, *, seed: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``budget`` random real training images (normalised) with the teacher's representations as targets."""
    idx = real_subset(dataset.train_images, budget, stream(seed, "random-subset", "cpu"))
    raw = dataset.train_images[idx].float().div(255).to(device)
    cfg = DistillConfig(method="krr_st", budget=budget, num_steps=0, bases=False, views=("identity",))
    synth = init_pixels(raw, teacher.to(device), cfg, dataset.mean, dataset.std)
    with torch.no_grad():
        return synth.support()


# ---------------------------------------------------------------------------------------------
# inspect


def inspect_bundle(path: str | Path, *, verify: bool = False, device: torch.device | None = None) -> dict[str, Any]:
    """Summary of a bundle: metadata, tensors, storage breakdown; ``verify`` also rebuilds every pair.

    Raises:
        BundleError: unreadable or invalid bundle, or (with ``verify``) a failed check.
    """
    bundle = load_bundle(path)
    storage = bundle.storage()
    meta = bundle.meta
    summary: dict[str, Any] = {
        "path": str(path),
        "format_version": int(meta["format_version"]),
        "method": bundle.method,
        "source": meta["source"],
        "image_shape": list(bundle.image_shape),
        "image_space": meta["image_space"],
        "basis_size": int(meta.get("basis_size", bundle.image_shape[1])),
        "views": bundle.views,
        "num_images": bundle.num_images,
        "num_pairs": bundle.num_images * len(bundle.views),
        "repr_dim": bundle.repr_dim,
        "counts": meta.get("counts", {}),
        "budget": int(meta["budget"]),
        "storage": storage.to_dict(),
        "teacher": meta["teacher"],
        "mean": bundle.mean,
        "std": bundle.std,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in bundle.tensors.items()},
        "fit": meta.get("fit", {}),
        "config": meta["config"],
        "ssdd_version": meta["ssdd_version"],
        "created": meta["created"],
    }
    if verify:
        checks: dict[str, bool] = {}
        recorded = meta["storage"]
        checks["storage matches metadata"] = abs(float(recorded.get("cost", -1)) - storage.cost) < 1e-3
        checks["within budget"] = storage.fits(int(meta["budget"]))
        images, targets = expand_pairs(bundle, device=device)
        checks["pairs finite"] = bool(torch.isfinite(images).all() and torch.isfinite(targets).all())
        checks["pair count"] = images.shape[0] == summary["num_pairs"] == targets.shape[0]
        summary["verify"] = checks
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            raise BundleError(f"{path}: verification failed ({', '.join(failed)}); re-create the bundle")
    return summary


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass
class EvalRow:
    """Accuracies (%) of one row of an evaluation table, one per seed."""

    name: str
    accuracies: list[float]
    note: str = ""

    @property
    def mean(self) -> float:
        """Mean accuracy."""
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for one seed)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


@dataclass
class EvalReport:
    """Result of :func:`evaluate`: rows (distilled set, baselines, floor, teacher) and the protocol."""

    target: str
    arch: str
    rows: list[EvalRow] = field(default_factory=list)
    paired: dict[str, list[float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "target": self.target,
            "arch": self.arch,
            "rows": [{"name": r.name, "mean": round(r.mean, 3), "std": round(r.std, 3),
                      "accuracies": [round(a, 3) for a in r.accuracies], "note": r.note} for r in self.rows],
            "paired_differences": {k: [round(v, 3) for v in vals] for k, vals in self.paired.items()},
            "config": self.config,
            "seconds": round(self.seconds, 1),
        }


def evaluate_pairs(images: torch.Tensor, targets: torch.Tensor, target: ImageDataset, config: EvalConfig, *,
                   seed: int, device: torch.device, reporter: ProgressReporter | None = None) -> float:
    """Pretrain ``config.arch`` on the pairs (0 epochs = no pretraining), then linear-probe on ``target``."""
    model = pretrain(images, targets, config, seed=seed, device=device, reporter=reporter)
    ftr = extract_features(model.embed, target.train_images, mean=target.mean, std=target.std, device=device, amp=config.amp)
    fte = extract_features(model.embed, target.test_images, mean=target.mean, std=target.std, device=device, amp=config.amp)
    return linear_probe(ftr, target.train_labels, fte, target.test_labels, num_steps=config.probe_steps,
                        batch_size=config.probe_batch_size, lr=config.probe_lr, seed=seed, device=device,
                        reporter=reporter)


def evaluate(
    target: ImageDataset,
    config: EvalConfig,
    *,
    device: torch.device,
    bundle: Bundle | None = None,
    baseline_source: ImageDataset | None = None,
    baseline_budget: int | None = None,
    teacher: Teacher | None = None,
    floor: bool = True,
    teacher_probe: bool = True,
    reporter: ProgressReporter | None = None,
) -> EvalReport:
    """Evaluate a bundle and/or the random baseline, with the no-pretraining floor and the teacher's own probe.

    Seeds ``seed, seed+1, ...`` are paired: seed ``s`` gives the same model initialisation for every row,
    and ``paired`` holds per-seed differences of the bundle against each other row.
    """
    t0 = time.perf_counter()
    reporter = reporter or NullReporter()
    seeds = [config.seed + i for i in range(config.num_seeds)]
    report = EvalReport(target=target.name, arch=config.arch, config=to_dict(config))
    if bundle is not None:
        images, targets = expand_pairs(bundle, device=device)
        if bundle.meta.get("image_space") == "raw":
            pass  # raw-space bundles are fed as stored, as upstream does (quirk Q2)
        accs = [evaluate_pairs(images, targets, target, config, seed=s, device=device, reporter=reporter) for s in seeds]
        report.rows.append(EvalRow(f"{bundle.method} (N={bundle.meta['budget']})", accs,
                                   f"{images.shape[0]} pairs, {len(bundle.views)} view(s)"))
    if baseline_source is not None and teacher is not None and baseline_budget:
        accs = []
        for s in seeds:
            xr, yr = random_baseline(baseline_source, teacher, baseline_budget, seed=s, device=device)
            accs.append(evaluate_pairs(xr, yr, target, config, seed=s, device=device, reporter=reporter))
        report.rows.append(EvalRow(f"random (N={baseline_budget})", accs, f"{baseline_budget} real images, teacher targets"))
    if floor:
        from dataclasses import replace

        no_pre = replace(config, pretrain_epochs=0)
        dummy_x = torch.zeros(1, target.num_channels, target.image_size, target.image_size)
        dim = bundle.repr_dim if bundle is not None else (teacher.repr_dim if teacher is not None else 1)
        accs = [evaluate_pairs(dummy_x, torch.zeros(1, dim), target, no_pre, seed=s, device=device, reporter=reporter)
                for s in seeds]
        report.rows.append(EvalRow("no pretraining (floor)", accs, "random init, same probe"))
    if teacher_probe and teacher is not None and teacher.image_size == target.image_size:
        acc = teacher_probe_accuracy(teacher, target, config, device=device, reporter=reporter)
        report.rows.append(EvalRow(f"teacher {teacher.arch} (own features)", [acc], "linear probe on the teacher"))
    if report.rows and len(report.rows[0].accuracies) == len(seeds):
        first = report.rows[0]
        for row in report.rows[1:]:
            if len(row.accuracies) == len(seeds) and not row.name.startswith("teacher"):
                report.paired[f"{first.name} - {row.name}"] = [a - b for a, b in zip(first.accuracies, row.accuracies, strict=True)]
    report.seconds = time.perf_counter() - t0
    return report


def check_budget(value: int | None) -> int | None:
    """Validate a ``--budget`` value early."""
    if value is not None and value <= 0:
        raise ConfigError(f"--budget must be a positive number of image-equivalents, got {value}")
    return value


_ = (asdict, check_output, derive_seed, synthetic_from_bundle, import_checkpoint, load_teacher, save_teacher,
     distill_config, eval_config, teacher_config)
