"""Evaluation runs (method.md §7): pretrain a fresh model on pairs, probe it, and compare paired rows."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from ..bundle import Bundle
from ..config import EvalConfig, distill_config, to_dict
from ..data.base import ImageDataset
from ..reporting import NullReporter, ProgressReporter
from ..teacher import Teacher
from .pretrain import pretrain
from .probe import extract_features, linear_probe
from .report import EvalReport, EvalRow


def evaluate_pairs(images: torch.Tensor, targets: torch.Tensor, target: ImageDataset, config: EvalConfig, *,
                   seed: int, device: torch.device, reporter: ProgressReporter | None = None) -> float:
    """Pretrain ``config.arch`` on the pairs (0 epochs = no pretraining), then linear-probe on ``target``."""
    model = pretrain(images, targets, config, seed=seed, device=device, reporter=reporter)
    ftr = extract_features(model.embed, target.train_images, mean=target.mean, std=target.std, device=device, amp=config.amp)
    fte = extract_features(model.embed, target.test_images, mean=target.mean, std=target.std, device=device, amp=config.amp)
    return linear_probe(ftr, target.train_labels, fte, target.test_labels, num_steps=config.probe_steps,
                        batch_size=config.probe_batch_size, lr=config.probe_lr, seed=seed, device=device,
                        reporter=reporter)


def teacher_probe_accuracy(teacher: Teacher, target: ImageDataset, config: EvalConfig, *, device: torch.device,
                           reporter: ProgressReporter | None = None) -> float:
    """Linear-probe accuracy (%) of the teacher's own representations on ``target`` (teacher on ``device``)."""
    ftr = extract_features(teacher.model.represent, target.train_images, mean=target.mean, std=target.std,
                           device=device, amp=config.amp)
    fte = extract_features(teacher.model.represent, target.test_images, mean=target.mean, std=target.std,
                           device=device, amp=config.amp)
    return linear_probe(ftr, target.train_labels, fte, target.test_labels, num_steps=config.probe_steps,
                        batch_size=config.probe_batch_size, lr=config.probe_lr, seed=config.seed, device=device,
                        reporter=reporter)


def baseline_pairs(method: str, dataset: ImageDataset, teacher: Teacher, budget: int, *, seed: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs of a baseline method (one without an outer loop) at ``budget`` for evaluation seed ``seed``.

    Built by the method's registry entry, so ``ssdd distill --method random --seed S`` stores the same set.
    """
    from ..methods.distill import distill

    result = distill(dataset, teacher, distill_config(method, budget=budget, seed=seed), device=device)
    with torch.no_grad():
        return result.synthetic.support()


def random_pairs(dataset: ImageDataset, teacher: Teacher, budget: int, *, seed: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The random baseline: ``budget`` real images (normalised) with the teacher's representations as targets."""
    return baseline_pairs("random", dataset, teacher, budget, seed=seed, device=device)


def evaluate(
    target: ImageDataset,
    config: EvalConfig,
    *,
    device: torch.device,
    bundle: Bundle | None = None,
    baseline_source: ImageDataset | None = None,
    baseline: str | None = "random",
    baseline_budget: int | None = None,
    teacher: Teacher | None = None,
    floor: bool = True,
    teacher_probe: bool = True,
    reporter: ProgressReporter | None = None,
) -> EvalReport:
    """Evaluate a bundle and/or a baseline method, with the no-pretraining floor and the teacher's own probe.

    Seeds ``seed, seed+1, ...`` are paired: seed ``s`` gives the same model initialisation for every row,
    and ``paired`` holds per-seed differences of the first row against each other row. ``teacher`` must be
    on ``device``.
    """
    from ..expand import expand_pairs

    t0 = time.perf_counter()
    reporter = reporter or NullReporter()
    seeds = [config.seed + i for i in range(config.num_seeds)]
    report = EvalReport(target=target.name, arch=config.arch, config=to_dict(config))
    if bundle is not None:
        images, targets = expand_pairs(bundle, device=device)  # raw-space bundles are fed as stored (quirk Q2)
        accs = [evaluate_pairs(images, targets, target, config, seed=s, device=device, reporter=reporter) for s in seeds]
        report.rows.append(EvalRow(f"{bundle.method} (N={bundle.meta.budget})", accs,
                                   f"{images.shape[0]} pairs, {len(bundle.views)} view(s)"))
    if baseline and baseline_source is not None and teacher is not None and baseline_budget:
        accs = []
        for s in seeds:
            xr, yr = baseline_pairs(baseline, baseline_source, teacher, baseline_budget, seed=s, device=device)
            accs.append(evaluate_pairs(xr, yr, target, config, seed=s, device=device, reporter=reporter))
        report.rows.append(EvalRow(f"{baseline} (N={baseline_budget})", accs, f"{baseline_budget} pairs, teacher targets"))
    if floor:
        no_pre = replace(config, pretrain_epochs=0)
        dummy_x = torch.zeros(1, target.num_channels, target.image_size, target.image_size)
        dim = bundle.repr_dim if bundle is not None else (teacher.repr_dim if teacher is not None else 1)
        accs = [evaluate_pairs(dummy_x, torch.zeros(1, dim), target, no_pre, seed=s, device=device, reporter=reporter)
                for s in seeds]
        report.rows.append(EvalRow("no pretraining (floor)", accs, "random init, same probe"))
    if teacher_probe and teacher is not None and teacher.image_size == target.image_size:
        acc = teacher_probe_accuracy(teacher, target, config, device=device, reporter=reporter)
        report.rows.append(EvalRow(f"teacher {teacher.arch} (own features)", [acc], "linear probe on the teacher"))
    report.pair_with_first(len(seeds))
    report.seconds = time.perf_counter() - t0
    return report
