"""Evaluation runs (method.md §7): pretrain a fresh model per (set, architecture, seed), evaluate it everywhere.

Each pretrained model is evaluated on every target with every protocol, and the paired table gathered.

The unit of work is one (row, architecture, seed): its pretraining is shared by all targets and
protocols, and the features of a target are extracted once per model for the linear probe and k-NN.
Units are independent, so they can be spread over processes (``shard``) and gathered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .. import distributed
from ..config import EvalConfig, distill_config, to_dict
from ..data.base import ImageDataset
from ..errors import NumericalError
from ..models.registry import Backbone
from ..reporting import NullReporter, ProgressReporter
from ..teacher import Teacher
from .finetune import finetune_accuracy
from .pretrain import pretrain
from .probe import extract_features, knn_accuracy, linear_probe
from .report import EvalReport, EvalResult, EvalRow

#: ``seed -> (images, targets)``: the pairs a row pretrains on for one evaluation seed
Pairs = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RowSpec:
    """A set to compare: its name and kind, and how to get its pairs (``None``: no pretraining)."""

    name: str
    kind: str
    pairs: Pairs | None
    note: str = ""
    epochs: int | None = None  # pretraining epochs when they differ from the config's (the `full` baseline)


def fixed_pairs(images: torch.Tensor, targets: torch.Tensor) -> Pairs:
    """The same pairs for every seed (a distilled bundle)."""
    return lambda _seed: (images, targets)


def evaluate_pairs(images: torch.Tensor, targets: torch.Tensor, target: ImageDataset, config: EvalConfig, *,
                   seed: int, device: torch.device, reporter: ProgressReporter | None = None,
                   arch: str | None = None) -> float:
    """Pretrain ``arch`` on the pairs (0 epochs = none), then linear-probe it on ``target``: one table cell.

    ``arch`` defaults to the first of ``config.archs``.
    """
    model = pretrain(images, targets, config, seed=seed, device=device, reporter=reporter, arch=arch)
    return protocol_accuracies(model, target, replace(config, protocols=("linear",)), seed=seed, device=device,
                               reporter=reporter)["linear"]


def feature_protocols(embed: Callable[[torch.Tensor], torch.Tensor], target: ImageDataset, config: EvalConfig, *,
                      seed: int, device: torch.device, reporter: ProgressReporter | None = None) -> dict[str, float]:
    """Linear probe and/or k-NN on frozen features, extracted once for both."""
    wanted = [p for p in config.protocols if p in ("linear", "knn")]
    if not wanted:
        return {}
    kw = dict(mean=target.mean, std=target.std, device=device, amp=config.amp)
    ftr, fte = extract_features(embed, target.train_images, **kw), extract_features(embed, target.test_images, **kw)
    out = {}
    if "linear" in wanted:
        out["linear"] = linear_probe(ftr, target.train_labels, fte, target.test_labels, num_steps=config.probe_steps,
                                     batch_size=config.probe_batch_size, lr=config.probe_lr, seed=seed, device=device,
                                     reporter=reporter)
    if "knn" in wanted:
        out["knn"] = knn_accuracy(ftr, target.train_labels, fte, target.test_labels, k=config.knn_k,
                                  temperature=config.knn_temperature, device=device)
    return out


def protocol_accuracies(model: Backbone, target: ImageDataset, config: EvalConfig, *, seed: int, device: torch.device,
                        reporter: ProgressReporter | None = None) -> dict[str, float]:
    """Top-1 (%) of a pretrained model on ``target`` under each of ``config.protocols``."""
    out = feature_protocols(model.embed, target, config, seed=seed, device=device, reporter=reporter)
    if "finetune" in config.protocols:
        out["finetune"] = finetune_accuracy(model, target, config, seed=seed, device=device, reporter=reporter)
    return {p: out[p] for p in config.protocols}


def teacher_probe_accuracy(teacher: Teacher, target: ImageDataset, config: EvalConfig, *, device: torch.device,
                           reporter: ProgressReporter | None = None) -> float:
    """Linear-probe accuracy (%) of the teacher's own representations on ``target`` (teacher on ``device``)."""
    return feature_protocols(teacher.model.represent, target, replace(config, protocols=("linear",)), seed=config.seed,
                             device=device, reporter=reporter)["linear"]


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


@dataclass(frozen=True)
class Unit:
    """One pretraining: row ``row`` (index), architecture ``arch``, seed ``seed``."""

    row: int
    arch: str
    seed: int


def plan_units(rows: list[RowSpec], config: EvalConfig) -> list[Unit]:
    """Every (row, architecture, seed) to run, rows outermost (the teacher row has no units)."""
    seeds = [config.seed + i for i in range(config.num_seeds)]
    return [Unit(i, arch, s) for i, row in enumerate(rows) if row.kind != "teacher" for arch in config.archs for s in seeds]


def run_unit(unit: Unit, rows: list[RowSpec], targets: list[ImageDataset], config: EvalConfig, *,
             device: torch.device, reporter: ProgressReporter) -> list[tuple[int, EvalResult]]:
    """Pretrain one model and evaluate it on every target with every protocol (one accuracy per cell)."""
    row = rows[unit.row]
    size = targets[0].image_size
    if row.pairs is None:  # the floor: the initialisation every row of this seed starts from, not trained
        nothing = torch.zeros(1, targets[0].num_channels, size, size), torch.zeros(1, 1)
        model = pretrain(*nothing, replace(config, pretrain_epochs=0), seed=unit.seed, device=device, arch=unit.arch)
    else:
        images, targets_ = row.pairs(unit.seed)
        cfg = config if row.epochs is None else replace(config, pretrain_epochs=row.epochs)
        reporter.note(f"{row.name}: pretraining {unit.arch} on {images.shape[0]:,} pairs for {cfg.pretrain_epochs} "
                      f"epochs (seed {unit.seed})")
        model = pretrain(images, targets_, cfg, seed=unit.seed, device=device, reporter=reporter, arch=unit.arch)
    out = []
    for target in targets:
        accs = protocol_accuracies(model, target, config, seed=unit.seed, device=device, reporter=reporter)
        out += [(unit.seed, EvalResult(row.name, unit.arch, target.name, p, [acc])) for p, acc in accs.items()]
    return out


def evaluate(
    targets: list[ImageDataset],
    rows: list[RowSpec],
    config: EvalConfig,
    *,
    device: torch.device,
    teacher: Teacher | None = None,
    reporter: ProgressReporter | None = None,
    shard: tuple[int, int] = (0, 1),
    gather: Callable[[list[tuple[int, EvalResult]]], list[tuple[int, EvalResult]]] | None = None,
) -> EvalReport:
    """Evaluate ``rows`` on ``targets`` for every architecture, protocol and seed; paired by seed.

    Seed ``s`` gives every row the same model initialisation and probe order. A row of kind
    ``teacher`` is the teacher's own features (linear probe and k-NN, once per target of its
    resolution). ``shard = (rank, world)`` runs only every ``world``-th unit starting at ``rank``;
    ``gather`` collects the ``(seed, result)`` lists of all shards (identity when there is one).
    """
    t0 = time.perf_counter()
    reporter = reporter or NullReporter()
    seeds = [config.seed + i for i in range(config.num_seeds)]
    report = EvalReport(rows=[EvalRow(r.name, r.kind, r.note) for r in rows], archs=list(config.archs),
                        targets=[t.name for t in targets], protocols=list(config.protocols), seeds=seeds,
                        config=to_dict(config))
    rank, world = shard
    mine: list[tuple[int, EvalResult]] = []
    with distributed.alone():  # a unit's inner work (a baseline's selection) never meets the other processes
        for k, unit in enumerate(plan_units(rows, config)):
            if k % world == rank:
                try:
                    mine += run_unit(unit, rows, targets, config, device=device, reporter=reporter)
                except NumericalError as exc:  # say which of many runs diverged
                    raise NumericalError(f"{rows[unit.row].name}, {unit.arch}, seed {unit.seed}: {exc}") from exc
    teacher_rows = [r for r in rows if r.kind == "teacher"]
    if teacher_rows and teacher is not None and rank == 0:
        features_cfg = replace(config, protocols=tuple(p for p in config.protocols if p != "finetune"))
        for target in targets:
            if teacher.image_size != target.image_size or not features_cfg.protocols:
                continue
            accs = feature_protocols(teacher.model.represent, target, features_cfg, seed=config.seed, device=device,
                                     reporter=reporter)
            mine += [(config.seed, EvalResult(teacher_rows[0].name, arch, target.name, p, [acc]))
                     for p, acc in accs.items() for arch in config.archs]
    everything = gather(mine) if gather is not None else mine
    report.results = _merge(everything)
    report.seconds = time.perf_counter() - t0
    return report


def _merge(results: list[tuple[int, EvalResult]]) -> list[EvalResult]:
    """One result per cell with its accuracies in seed order (units arrive one seed at a time, in any order)."""
    cells: dict[tuple[str, str, str, str], list[tuple[int, float]]] = {}
    for seed, r in results:
        cells.setdefault((r.row, r.arch, r.target, r.protocol), []).extend((seed, a) for a in r.accuracies)
    return [EvalResult(*key, [a for _, a in sorted(vals)]) for key, vals in cells.items()]
