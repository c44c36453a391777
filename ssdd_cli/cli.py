"""The ``ssdd`` command line: a thin Typer layer over :mod:`ssdd_cli.api`.

stdout carries results (rich tables or ``--json``); progress, logs and errors go to stderr.
Every :class:`~ssdd_cli.errors.SsddError` becomes ``error: <one line>`` and its exit code.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import ConfigError, SsddError

app = typer.Typer(
    name="ssdd",
    help="Self-supervised dataset distillation: compress an unlabeled image dataset into a tiny "
    "synthetic set (KRR-ST and Boost), then pretrain any architecture from it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


class Method(str, Enum):
    """Distillation methods."""

    boost = "boost"
    krr_st = "krr-st"


class Preset(str, Enum):
    """Named hyper-parameter presets."""

    paper = "paper"
    cpu = "cpu"


class Baseline(str, Enum):
    """Baselines for ``evaluate``."""

    none = "none"
    random = "random"


class Init(str, Enum):
    """Basis initialisation."""

    pca = "pca"
    random = "random"


# ------------------------------------------------------------------------------------------------
# shared options (declared once)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Root random seed.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
DataRootOpt = Annotated[
    Optional[Path],
    typer.Option("--data-root", help="Folder holding the dataset (archives, image folders or torchvision layout)."),
]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache folder (default: $SSDD_CACHE or ~/.cache/ssdd).")]
ImageSizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="Resize images to this side (default: 32, 64 for imagenet-subset).")]
ClassesOpt = Annotated[Optional[str], typer.Option("--classes", help="imagenet-subset classes: a wnid list file or 'imagenette'.")]
PresetOpt = Annotated[Preset, typer.Option("--preset", help="paper: method.md settings; cpu: minutes on a 2-core CPU (docs/cpu-preset.md).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for ssdd errors too.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Allow torchvision to download CIFAR into --data-root (needs internet).")]


@contextmanager
def _session(quiet: bool = False, verbose: bool = False, debug: bool = False) -> Iterator[Any]:
    """Logging + progress for one command; SsddError → one line on stderr and its exit code."""
    from .reporting import NullReporter, RichReporter, setup_logging

    setup_logging(-1 if quiet else (1 if verbose else 0), err)
    reporter = NullReporter() if quiet else RichReporter(err)
    try:
        yield reporter
    except SsddError as exc:
        reporter.stop()
        if debug:
            raise
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.stop()
        err.print("[yellow]interrupted[/]; no output was written")
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"ssdd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Self-supervised dataset distillation."""


def _check_arch(name: str | None) -> None:
    """Refuse an unknown architecture before any dataset loads (a typo should fail at once)."""
    if name is not None:
        from .models import check_model_name

        check_model_name(name)


def _load_data(name: str, data_root: Path | None, cache: Path | None, image_size: int | None,
               classes: str | None, download: bool, reporter: Any) -> Any:
    from .api import load_dataset

    return load_dataset(name, data_root=data_root, cache_dir=cache, image_size=image_size, classes=classes,
                        download=download, reporter=reporter)


def _print_storage(report: Any, budget: int | None = None) -> None:
    table = Table(title="storage (floats / image-equivalents)", title_justify="left")
    table.add_column("tensor")
    table.add_column("group")
    table.add_column("floats", justify="right")
    table.add_column("image-eq.", justify="right")
    for key, group, n, eq in report.table():
        table.add_row(key, group, f"{n:,}", f"{eq:.2f}")
    table.add_row("[bold]total", "", f"[bold]{report.total_floats:,}", f"[bold]{report.image_equivalents:.2f}")
    charged = f"budget cost {report.cost:.2f}" + (f" / {budget}" if budget else "")
    if report.method in ("krr_st", "random"):
        charged += " (pixel method: the budget counts images only)"
    table.caption = charged
    err.print(table)


# ------------------------------------------------------------------------------------------------
# teacher


@app.command()
def teacher(
    dataset: Annotated[Optional[str], typer.Argument(help="Dataset name (cifar10, cifar100, imagenet-subset, shapes) or image-folder path.")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Teacher file (default: the cache, where `ssdd distill` finds it).")] = None,
    import_ckpt: Annotated[Optional[Path], typer.Option("--import", help="Convert a KRR-ST .pt or solo-learn .ckpt instead of training.")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="Backbone (default: resnet18; convnet4_s with --preset cpu).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimisation steps.")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Stop training after this many minutes.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per step.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (LARS: per 256 images).")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="lars, adamw or sgd.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast (default with --preset cpu: on where the CPU has AMX/AVX512-BF16 or on CUDA).")] = None,
    stem_padding: Annotated[int, typer.Option("--stem-padding", help="ResNet stem padding of an imported checkpoint.")] = 2,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Linear-probe the teacher on the dataset and record it.")] = True,
    preset: PresetOpt = Preset.paper,
    data_root: DataRootOpt = None,
    cache_dir: CacheOpt = None,
    image_size: ImageSizeOpt = None,
    classes: ClassesOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a Barlow Twins teacher on DATASET, or convert a checkpoint with --import."""
    with _session(quiet, verbose, debug) as rep:
        from . import api
        from .paths import check_output

        if dataset is None and import_ckpt is None:
            raise ConfigError("give a DATASET to train on, or --import CKPT to convert a checkpoint")
        dev = api.resolve_device(device)
        if import_ckpt is not None:
            if output is None:
                raise ConfigError("--import needs -o FILE for the converted teacher")
            check_output(output, overwrite)
            data = _load_data(dataset, data_root, cache_dir, image_size, classes, download, rep) if dataset else None
            if data is None:
                from .data.registry import REFERENCE_STATS

                mean, std = REFERENCE_STATS[("cifar100", 32)]
            else:
                mean, std = data.mean, data.std
            t = api.import_checkpoint(import_ckpt, arch=arch or "resnet18", image_size=image_size or (data.image_size if data else 32),
                                      mean=mean, std=std, stem_padding=stem_padding,
                                      dataset_name=data.name if data else "")
            api.save_teacher(t, output, overwrite=overwrite)
            err.print(f"imported {import_ckpt} ({t.meta['origin']}, {t.arch}, {t.repr_dim}-d) → {output}")
            return
        _check_arch(arch)
        data = _load_data(dataset, data_root, cache_dir, image_size, classes, download, rep)
        target = output or api.default_teacher_path(data.name, data.image_size, cache_dir)
        check_output(target, overwrite)
        cfg = api.teacher_config(preset.value, arch=arch, num_steps=steps, max_minutes=minutes, batch_size=batch_size,
                                 lr=lr, optimizer=optimizer, amp=amp, seed=seed)
        err.print(f"training {cfg.arch} teacher on {data.name} ({data.train_images.shape[0]:,} images, "
                  f"{data.image_size}px) on {dev} for {cfg.num_steps:,} steps"
                  + (f" or {cfg.max_minutes} min" if cfg.max_minutes else ""))
        if dev.type == "cpu" and preset == Preset.paper and steps is None and minutes is None:
            err.print("[yellow]note:[/] the paper preset trains a ResNet-18 for 1000 epochs, which takes weeks on a CPU; "
                      "--preset cpu (docs/cpu-preset.md), --steps or --minutes make it practical")
        t = api.make_teacher(data, cfg, device=dev, reporter=rep)
        if probe:
            acc = api.teacher_probe_accuracy(t, data, api.eval_config(preset.value), device=dev, reporter=rep)
            t.meta["probe_accuracy"] = round(acc, 2)
            t.meta["probe_target"] = data.name
        api.save_teacher(t, target, overwrite=overwrite)
        meta = t.meta
        err.print(f"teacher: {meta['steps_done']:,} steps in {meta['train_seconds']:.0f} s, final loss {meta['final_loss']:.4g}"
                  + (f", linear probe {meta['probe_accuracy']:.2f}% on {data.name}" if probe else ""))
        out.print(str(target))


# ------------------------------------------------------------------------------------------------
# distill


@app.command()
def distill(
    dataset: Annotated[str, typer.Argument(help="Source dataset name or image-folder path.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle to write (.safetensors).")],
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="Teacher file (default: the cached one from `ssdd teacher DATASET`).")] = None,
    budget: Annotated[int, typer.Option("--budget", "-N", help="Storage budget N in image-equivalents.")] = 100,
    method: Annotated[Method, typer.Option("--method", help="boost (default) or krr-st.")] = Method.boost,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Outer steps.")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Stop the outer loop after this many minutes.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Outer AdamW learning rate.")] = None,
    lr_targets: Annotated[Optional[float], typer.Option("--lr-targets", help="Separate lr for the target side.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Real images per outer step.")] = None,
    pool_arch: Annotated[Optional[str], typer.Option("--pool-arch", help="Pool ConvNet architecture.")] = None,
    pool_size: Annotated[Optional[int], typer.Option("--pool-size", help="Number of pool models.")] = None,
    pool_online_steps: Annotated[Optional[int], typer.Option("--pool-online-steps", help="Online updates before a pool model is re-initialised.")] = None,
    pool_reset_bug: Annotated[Optional[bool], typer.Option("--pool-reset-bug", help="Reproduce upstream's pool counter quirk (Q1).")] = None,
    krrst_raw_space: Annotated[Optional[bool], typer.Option("--krrst-raw-space", help="Keep images in raw [0,1] space (upstream quirk Q2).")] = None,
    views: Annotated[Optional[str], typer.Option("--views", help="Predefined views, e.g. identity,rot90,rot180,rot270 or identity,hflip.")] = None,
    no_bases: Annotated[bool, typer.Option("--no-bases", help="Ablation: store pixels instead of bases.")] = False,
    no_aug: Annotated[bool, typer.Option("--no-aug", help="Ablation: identity view only.")] = False,
    no_approx: Annotated[bool, typer.Option("--no-approx", help="Ablation: store every view's targets (charged to the budget).")] = False,
    num_images: Annotated[Optional[int], typer.Option("--num-images", "-m", help="Distilled images m (default: from the budget).")] = None,
    image_rank: Annotated[Optional[int], typer.Option("--image-rank", "-U", help="Image bases U.")] = None,
    repr_rank: Annotated[Optional[int], typer.Option("--repr-rank", "-V", help="Representation bases V.")] = None,
    basis_size: Annotated[Optional[int], typer.Option("--basis-size", help="Side of the image bases (default: half the image side).")] = None,
    approx_hidden: Annotated[Optional[int], typer.Option("--approx-hidden", "-k", help="Hidden width of the approximation networks.")] = None,
    approx_mode: Annotated[Optional[str], typer.Option("--approx-mode", help="after: fit the approximation networks after distillation (paper); joint: fit at init and train them in the loop.")] = None,
    init: Annotated[Optional[Init], typer.Option("--init", help="Basis initialisation: pca or random.")] = None,
    freeze_means: Annotated[Optional[bool], typer.Option("--freeze-means", help="Keep the PCA means fixed.")] = None,
    aug_in_krr: Annotated[Optional[bool], typer.Option("--aug-in-krr/--no-aug-in-krr", help="Views enter the KRR support set.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast for the pool ConvNets (default with --preset cpu: on where bf16 is fast).")] = None,
    preset: PresetOpt = Preset.paper,
    data_root: DataRootOpt = None,
    cache_dir: CacheOpt = None,
    image_size: ImageSizeOpt = None,
    classes: ClassesOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Distil DATASET into a bundle of at most --budget image-equivalents."""
    with _session(quiet, verbose, debug) as rep:
        from . import api
        from .paths import check_output

        api.check_budget(budget)
        check_output(output, overwrite)
        dev = api.resolve_device(device)
        if no_aug:
            views = "identity"
        _check_arch(pool_arch)
        data = _load_data(dataset, data_root, cache_dir, image_size, classes, download, rep)
        cfg = api.distill_config(
            method.value, preset.value, data.image_size, budget=budget, num_steps=steps, max_minutes=minutes, lr=lr,
            lr_targets=lr_targets, batch_size=batch_size, pool_arch=pool_arch, pool_size=pool_size,
            pool_online_steps=pool_online_steps, pool_reset_bug=pool_reset_bug, raw_space=krrst_raw_space,
            views=tuple(views.split(",")) if views else None, bases=False if no_bases else None,
            approx=False if no_approx else None, num_images=num_images, image_rank=image_rank, repr_rank=repr_rank,
            basis_size=basis_size, approx_hidden=approx_hidden, approx_mode=approx_mode, init=init.value if init else None,
            freeze_means=freeze_means, aug_in_krr=aug_in_krr, amp=amp, seed=seed,
        )
        tpath = teacher or api.default_teacher_path(data.name, data.image_size, cache_dir)
        if teacher is None and not tpath.exists():
            raise ConfigError(f"no teacher for {data.name} at {data.image_size}px; run `ssdd teacher {dataset}` first "
                              "or pass --teacher FILE")
        t = api.load_teacher(tpath, dev)
        plan = api.planned_storage(cfg, data, t.repr_dim)
        _print_storage(plan, budget)
        err.print(f"distilling {data.name} with {cfg.method} on {dev}: m={plan.num_images}, views={','.join(cfg.views)}, "
                  f"{cfg.num_steps:,} steps" + (f" or {cfg.max_minutes} min" if cfg.max_minutes else ""))
        if dev.type == "cpu" and preset == Preset.paper and steps is None and minutes is None:
            err.print(f"[yellow]note:[/] the paper preset runs {cfg.num_steps:,} outer steps, which takes days on a CPU; "
                      "--preset cpu (docs/cpu-preset.md), --steps or --minutes make it practical")
        result = api.distill(data, t, cfg, device=dev, cache=cache_dir, reporter=rep)
        api.save_distilled(result, output, overwrite=overwrite)
        fit = result.meta["fit"]
        summary = {"output": str(output), "method": cfg.method, "steps": fit["steps_done"], "seconds": round(result.seconds, 1),
                   "first_loss": fit["first_loss"], "final_loss": fit["final_loss"], "storage": result.meta["storage"],
                   "approx_fit": fit["approx"], "drift": fit.get("drift")}
        if json_out:
            out.print_json(json.dumps(summary))
            return
        drift = fit.get("drift") or {}
        msg = (f"wrote {output}: {fit['steps_done']:,} steps in {result.seconds:.0f} s, outer loss "
               f"{fit['first_loss']:.4g} → {fit['final_loss']:.4g}" if fit["steps_done"] else f"wrote {output} (0 steps)")
        out.print(msg, highlight=False)
        if fit["steps_done"]:
            out.print(f"  support moved {100 * drift.get('images', 0):.1f}% (images), {100 * drift.get('targets', 0):.1f}% "
                      "(targets) from its initialisation", highlight=False)
        for view, rel in fit["approx"].items():
            out.print(f"  approximation network {view}: relative error {rel['relative_error']:.3f} (1.0 = predicting no shift)")


# ------------------------------------------------------------------------------------------------
# inspect


@app.command()
def inspect(
    bundle: Annotated[Path, typer.Argument(help="Bundle (.safetensors) to describe.")],
    verify: Annotated[bool, typer.Option("--verify", help="Also rebuild every pair and check storage and budget.")] = False,
    json_out: JsonOpt = False,
    device: DeviceOpt = "cpu",
    debug: DebugOpt = False,
) -> None:
    """Show what is inside a bundle: method, sizes, views, teacher and the storage breakdown."""
    with _session(True, False, debug):
        from . import api

        summary = api.inspect_bundle(bundle, verify=verify, device=api.resolve_device(device))
        if json_out:
            out.print_json(json.dumps(summary, default=str))
            return
        st = summary["storage"]
        table = Table(title=f"{bundle}", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        c = summary["counts"]
        rows = [
            ("method", summary["method"]),
            ("source", f"{summary['source']} ({summary['image_shape'][1]}px, {summary['image_space']} space)"),
            ("images", f"{summary['num_images']} × {len(summary['views'])} view(s) = {summary['num_pairs']} pairs"),
            ("views", ", ".join(summary["views"])),
            ("sizes", ", ".join(f"{k}={v}" for k, v in c.items() if v)),
            ("teacher", f"{summary['teacher'].get('arch')} {summary['teacher'].get('repr_dim')}-d, sha256 {str(summary['teacher'].get('sha256'))[:12]}"),
            ("budget", f"cost {st['cost']:.2f} of N={summary['budget']} ({st['total_floats']:,} floats = {st['image_equivalents']:.2f} image-eq.)"),
            ("breakdown", ", ".join(f"{g} {n:,}" for g, n in st["groups"].items())),
            ("created", f"{summary['created']} by ssdd {summary['ssdd_version']}"),
        ]
        approx = summary["fit"].get("approx", {})
        if approx:
            rows.append(("approx fit", ", ".join(f"{v}: {r['relative_error']:.3f}" for v, r in approx.items())))
        for k, v in rows:
            table.add_row(k, str(v))
        out.print(table)
        t2 = Table(title="storage breakdown", title_justify="left")
        for col in ("group", "floats", "image-eq."):
            t2.add_column(col, justify="right" if col != "group" else "left")
        for g, n in st["groups"].items():
            t2.add_row(g, f"{n:,}", f"{n / st['image_numel']:.2f}")
        t2.add_row("[bold]total", f"[bold]{st['total_floats']:,}", f"[bold]{st['image_equivalents']:.2f}")
        out.print(t2)
        if verify:
            for name, ok in summary["verify"].items():
                out.print(f"  [green]✓[/] {name}" if ok else f"  [red]✗[/] {name}")


# ------------------------------------------------------------------------------------------------
# expand


@app.command()
def expand(
    bundle: Annotated[Path, typer.Argument(help="Bundle (.safetensors) to expand.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to create.")],
    views: Annotated[Optional[str], typer.Option("--views", help="Comma-separated subset of the bundle's views (default: all).")] = None,
    no_png: Annotated[bool, typer.Option("--no-png", help="Only write the float tensors and the manifest.")] = False,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Rebuild every view's image and target: PNGs + a grid per view for people, float tensors for programs."""
    with _session(quiet, False, debug):
        from . import api

        b = api.load_bundle(bundle)
        t0 = time.perf_counter()
        manifest = api.write_expanded(b, output, views=views, device=api.resolve_device(device), overwrite=overwrite,
                                      write_images=not no_png)
        out.print(f"wrote {manifest['num_pairs']} pairs ({manifest['num_images']} images × {len(manifest['views'])} views) "
                  f"to {output} in {time.perf_counter() - t0:.1f} s", highlight=False)


# ------------------------------------------------------------------------------------------------
# evaluate


@app.command()
def evaluate(
    bundle: Annotated[Optional[Path], typer.Argument(help="Bundle to evaluate (omit with --baseline random and --teacher).")] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="Target dataset for the linear probe (default: the bundle's source).")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture pretrained on the set (default: convnet3; convnet3_s with --preset cpu).")] = None,
    baseline: Annotated[Baseline, typer.Option("--baseline", help="Also evaluate N random real images with teacher targets.")] = Baseline.none,
    budget: Annotated[Optional[int], typer.Option("--budget", "-N", help="Budget of the random baseline (default: the bundle's).")] = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="Teacher for the baseline and its own probe (default: the bundle's).")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Source dataset of the random baseline (default: the bundle's).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Pretraining epochs.")] = None,
    probe_steps: Annotated[Optional[int], typer.Option("--probe-steps", help="Linear-probe SGD steps.")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Independent runs (paired across rows).")] = None,
    floor: Annotated[bool, typer.Option("--floor/--no-floor", help="Also report the no-pretraining floor.")] = True,
    teacher_probe: Annotated[bool, typer.Option("--teacher-probe/--no-teacher-probe", help="Also report the teacher's own probe accuracy.")] = True,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast (default with --preset cpu: on where the CPU has AMX/AVX512-BF16 or on CUDA).")] = None,
    preset: PresetOpt = Preset.paper,
    data_root: DataRootOpt = None,
    cache_dir: CacheOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Pretrain a fresh model on the set's pairs, linear-probe it on --target, and compare with baselines."""
    with _session(quiet, verbose, debug) as rep:
        from . import api
        from .paths import check_output

        if json_path is not None:
            check_output(json_path, overwrite)
        cfg = api.eval_config(preset.value, arch=arch, pretrain_epochs=epochs, probe_steps=probe_steps, num_seeds=seeds,
                              amp=amp, seed=seed)
        _check_arch(cfg.arch)
        dev = api.resolve_device(device)
        b = api.load_bundle(bundle) if bundle is not None else None
        if b is None and baseline == Baseline.none:
            raise ConfigError("give a BUNDLE, or --baseline random with --teacher and --source")
        tpath = teacher or (Path(b.meta["teacher"]["path"]) if b is not None and b.meta["teacher"].get("path") else None)
        t = None
        if tpath is not None and tpath.exists():
            t = api.load_teacher(tpath, dev)
            if b is not None and b.meta["teacher"].get("sha256") not in (None, t.sha256):
                err.print(f"[yellow]warning:[/] teacher {tpath} differs from the one the bundle was distilled with")
        elif baseline == Baseline.random or teacher is not None:
            raise ConfigError("the random baseline needs the teacher: pass --teacher FILE"
                              + (f" (the bundle's teacher {tpath} is missing)" if tpath else ""))
        src_name = source or (b.meta["source"] if b is not None else None)
        tgt_name = target or src_name
        if tgt_name is None:
            raise ConfigError("give --target (or --source) for the random baseline")
        size = b.image_shape[1] if b is not None else (t.image_size if t else None)
        tgt = _load_data(tgt_name, data_root, cache_dir, size, None, download, rep)
        src = None
        n = budget or (int(b.meta["budget"]) if b is not None else None)
        if baseline == Baseline.random:
            if n is None:
                raise ConfigError("--baseline random needs --budget N (or a bundle)")
            api.check_budget(n)
            src = tgt if src_name == tgt_name else _load_data(src_name, data_root, cache_dir, size, None, download, rep)
        err.print(f"evaluating on {tgt.name} with {cfg.arch}: {cfg.pretrain_epochs} pretraining epochs, "
                  f"{cfg.probe_steps} probe steps, {cfg.num_seeds} seed(s), device {dev}")
        report = api.evaluate(tgt, cfg, device=dev, bundle=b, baseline_source=src, baseline_budget=n if src else None,
                              teacher=t, floor=floor, teacher_probe=teacher_probe, reporter=rep)
        table = Table(title=f"linear probe on {tgt.name} ({cfg.arch}, {cfg.pretrain_epochs} ep pretraining, "
                            f"{cfg.num_seeds} seed(s))", title_justify="left")
        table.add_column("set")
        table.add_column("top-1 %", justify="right")
        table.add_column("runs", justify="right")
        table.add_column("note")
        for row in report.rows:
            acc = f"{row.mean:.2f} ± {row.std:.2f}" if len(row.accuracies) > 1 else f"{row.mean:.2f}"
            table.add_row(row.name, acc, str(len(row.accuracies)), row.note)
        out.print(table)
        for name, diffs in report.paired.items():
            mean = sum(diffs) / len(diffs)
            out.print(f"paired difference {name}: {mean:+.2f} (per seed: {', '.join(f'{d:+.2f}' for d in diffs)})",
                      highlight=False)
        if json_path is not None:
            from .paths import atomic_file

            with atomic_file(json_path) as tmp:
                tmp.write_text(json.dumps(report.to_dict(), indent=1))
            err.print(f"wrote {json_path}")


@app.command("models")
def models_cmd() -> None:
    """List the registered architectures."""
    from .models import model_descriptions

    table = Table("name", "description")
    for name, desc in model_descriptions().items():
        table.add_row(name, desc)
    out.print(table)


def run() -> None:  # pragma: no cover - console-script shim
    """Entry point that keeps SsddError tracebacks out of the console."""
    app()


_ = (Callable, sys)
