"""The ``ssdd`` command line: a thin Typer layer over :mod:`ssdd_cli.api`.

Each command parses its options, calls one API function and renders the result. stdout carries
results (rich tables or ``--json``); progress, notes and errors go to stderr. Every
:class:`~ssdd_cli.errors.SsddError` becomes ``error: <one line>`` and its exit code. Common settings
have flags; every other field of a command's configuration is set with ``--set key=value`` or a
``--config run.toml`` file (listed by ``ssdd settings``). Importing this module does not import torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

try:  # recent typer vendors click; older releases depend on it
    from typer import _click as click  # noqa: I001
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]

from . import __version__
from .distributed import is_main, rank
from .errors import ConfigError, SsddError
from .methods.registry import list_methods


class _OneLineErrors(TyperGroup):
    """Click's usage errors (a bad integer, a missing option) as one ``error:`` line and exit 2, like ssdd's own."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `ssdd` alone, or a command without arguments: its help
            code = exc.exit_code
        except click.exceptions.UsageError as exc:
            command = f" {exc.ctx.info_name}" if exc.ctx is not None and exc.ctx.parent is not None else ""
            err.print(f"[bold red]error:[/] {escape(exc.format_message())} (see `ssdd{command} --help`)", highlight=False,
                      soft_wrap=True)
            code = exc.exit_code
        except click.exceptions.ClickException as exc:
            err.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
            code = exc.exit_code
        except (typer.Abort, getattr(click.exceptions, "Abort", typer.Abort)):
            err.print("[bold red]error:[/] aborted", highlight=False)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="ssdd",
    help="Self-supervised dataset distillation: compress an unlabeled image dataset into a tiny "
    "synthetic set (KRR-ST and Boost), then pretrain any architecture from it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain help: whole option names and wrapped text at any width, e.g. 80 columns
)
out = Console()
err = Console(stderr=True)
METHOD_NAMES = ", ".join(m.replace("_", "-") for m in list_methods())

# ------------------------------------------------------------------------------------------------
# shared options (declared once)

DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Root random seed.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
DataRootOpt = Annotated[
    Optional[Path],
    typer.Option("--data-root", metavar="DIR", help="Folder holding the dataset (archives, image folders or torchvision layout)."),
]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", metavar="DIR", help="Cache folder (default: $SSDD_CACHE or ~/.cache/ssdd).")]
ImageSizeOpt = Annotated[Optional[int], typer.Option("--image-size", metavar="PX", help="Resize images to this side (default: 32, 64 for imagenet-subset).")]
ClassesOpt = Annotated[Optional[str], typer.Option("--classes", metavar="FILE|imagenette", help="imagenet-subset classes: a wnid list file or 'imagenette'.")]
PresetOpt = Annotated[str, typer.Option("--preset", metavar="paper|cpu", help="paper: method.md settings; cpu: minutes on a 2-core CPU (docs/cpu-preset.md).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", metavar="FILE", help="TOML file of settings ([teacher], [distill], [evaluate] tables).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="KEY=VALUE for any setting (repeatable; see `ssdd settings`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for ssdd errors too.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Allow torchvision to download CIFAR into --data-root (needs internet).")]
ThreadsOpt = Annotated[str, typer.Option("--threads", metavar="N|auto", help="CPU threads (auto: the idle cores, or OMP_NUM_THREADS when set).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint (<output>.ckpt).")]
CheckpointOpt = Annotated[int, typer.Option("--checkpoint-every", metavar="K", help="Steps between checkpoints (0: only when interrupted).")]
AmpOpt = Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast (default with --preset cpu: where the CPU has AMX/AVX512-BF16, or CUDA).")]


@contextmanager
def _session(quiet: bool = False, verbose: bool = False, debug: bool = False, threads: str | None = None) -> Iterator[Any]:
    """Logging + progress (+ threads) for one command; SsddError → one line on stderr and its exit code.

    Under torchrun only rank 0 shows progress and notes; every rank reports its own error.
    """
    from .reporting import NullReporter, RichReporter, setup_logging

    quiet = quiet or not is_main()
    who = "" if is_main() else f" (rank {rank()})"
    setup_logging(-1 if quiet else (1 if verbose else 0), err)
    reporter = NullReporter() if quiet else RichReporter(err)
    try:
        if threads is not None:
            from .device import set_threads

            set_threads(threads)
        yield reporter
    except SsddError as exc:
        reporter.stop()
        if debug:
            raise
        err.print(f"[bold red]error{who}:[/] {escape(' '.join(str(exc).split()))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.stop()
        err.print(f"[bold red]error{who}:[/] interrupted; no output was written", highlight=False)
        raise typer.Exit(130) from None


def _settings(section: str, config_file: Path | None, assignments: list[str] | None, **flags: Any) -> dict[str, Any]:
    """Settings for one command: the TOML file, then ``--set``, then the flags that were given."""
    from .config import load_config_file, parse_assignments

    values = load_config_file(config_file, section) if config_file is not None else {}
    values.update(parse_assignments(assignments or []))
    values.update({k: v for k, v in flags.items() if v is not None})
    return values


def _data(data_root: Path | None, cache_dir: Path | None, image_size: int | None = None, classes: str | None = None,
          download: bool = False) -> Any:
    from .api import DataOptions

    return DataOptions(data_root, cache_dir, image_size, classes, download)


def _version(value: bool) -> None:
    if value:
        out.print(f"ssdd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Self-supervised dataset distillation."""


# ------------------------------------------------------------------------------------------------
# teacher


@app.command()
def teacher(
    dataset: Annotated[Optional[str], typer.Argument(metavar="DATASET", help="Dataset name (cifar10, cifar100, imagenet-subset, shapes) or image-folder path.")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="FILE", help="Teacher file (default: the cache, where `ssdd distill` finds it).")] = None,
    import_ckpt: Annotated[Optional[Path], typer.Option("--import", metavar="CKPT", help="Convert a KRR-ST .pt or solo-learn .ckpt instead of training.")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", metavar="ARCH", help="Backbone (default: resnet18; convnet4_s with --preset cpu).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", metavar="N", help="Optimisation steps.")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", metavar="MIN", help="Stop training after this many minutes.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", metavar="N", help="Images per step.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", metavar="LR", help="Learning rate (LARS: per 256 images).")] = None,
    amp: AmpOpt = None,
    stem_padding: Annotated[int, typer.Option("--stem-padding", metavar="N", help="ResNet stem padding of an imported checkpoint.")] = 2,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Linear-probe the teacher on the dataset and record it.")] = True,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointOpt = 500,
    preset: PresetOpt = "paper",
    config_file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_root: DataRootOpt = None,
    cache_dir: CacheOpt = None,
    image_size: ImageSizeOpt = None,
    classes: ClassesOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = "auto",
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a Barlow Twins teacher on DATASET, or convert a checkpoint with --import."""
    with _session(quiet, verbose, debug, threads) as rep:
        from . import api

        data = _data(data_root, cache_dir, image_size, classes, download)
        if import_ckpt is not None:
            if output is None:
                raise ConfigError("--import needs -o FILE for the converted teacher")
            run = api.import_teacher_to_file(import_ckpt, output, dataset=dataset, data=data, arch=arch,
                                             stem_padding=stem_padding, overwrite=overwrite, reporter=rep)
            err.print(f"imported {import_ckpt} ({run.teacher.meta['origin']}, {run.teacher.arch}, "
                      f"{run.teacher.repr_dim}-d) → {output}")
            return
        if dataset is None:
            raise ConfigError("give a DATASET to train on, or --import CKPT to convert a checkpoint")
        settings = _settings("teacher", config_file, assignments, arch=arch, num_steps=steps, max_minutes=minutes,
                             batch_size=batch_size, lr=lr, amp=amp, seed=seed)
        run = api.teacher_to_file(dataset, output=output, data=data, preset=preset, settings=settings, probe=probe,
                                  overwrite=overwrite, device=device, reporter=rep, checkpoint_every=checkpoint_every,
                                  resume=resume)
        _render_teacher(run)


def _render_teacher(run: Any) -> None:
    if not is_main():  # under torchrun rank 0 speaks for the run
        return
    meta = run.teacher.meta
    probe = (f", linear probe {meta['probe_accuracy']:.2f}% on {meta['probe_target']} ({meta['probe_steps']:,} probe steps)"
             if "probe_accuracy" in meta else "")
    err.print(f"teacher: {meta['steps_done']:,} steps in {meta['train_seconds']:.0f} s, final loss {meta['final_loss']:.4g}"
              + probe, soft_wrap=True, highlight=False)
    out.print(str(run.path))


# ------------------------------------------------------------------------------------------------
# distill


@app.command()
def distill(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help="Source dataset name or image-folder path.")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="Bundle to write (.safetensors).")],
    teacher: Annotated[Optional[Path], typer.Option("--teacher", metavar="FILE", help="Teacher file (default: the cached one from `ssdd teacher DATASET`).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", "-N", metavar="N", help="Storage budget N in image-equivalents [default: 100].")] = None,
    method: Annotated[str, typer.Option("--method", metavar="METHOD", help=f"Method: {METHOD_NAMES} (`ssdd methods`).")] = "boost",
    steps: Annotated[Optional[int], typer.Option("--steps", metavar="N", help="Outer steps (default: the preset's; --preset cpu runs none for boost: its initialised set).")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", metavar="MIN", help="Stop the outer loop after this many minutes.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", metavar="LR", help="Outer AdamW learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", metavar="N", help="Real images per outer step.")] = None,
    views: Annotated[Optional[str], typer.Option("--views", metavar="VIEWS", help="Predefined views, e.g. identity,rot90,rot180,rot270 (the default) or identity,hflip; --preset cpu serves identity only, so add --set approx=true for the views' networks.")] = None,
    no_bases: Annotated[bool, typer.Option("--no-bases", help="Ablation: store pixels instead of bases.")] = False,
    no_aug: Annotated[bool, typer.Option("--no-aug", help="Ablation: identity view only.")] = False,
    no_approx: Annotated[bool, typer.Option("--no-approx", help="Ablation: store every view's targets (charged to the budget).")] = False,
    init: Annotated[Optional[str], typer.Option("--init", metavar="pca|random", help="Basis initialisation: pca or random (ablation).")] = None,
    num_images: Annotated[Optional[int], typer.Option("--num-images", "-m", metavar="M", help="Distilled images m (default: from the budget).")] = None,
    image_rank: Annotated[Optional[int], typer.Option("--image-rank", "-U", metavar="U", help="Image bases U.")] = None,
    repr_rank: Annotated[Optional[int], typer.Option("--repr-rank", "-V", metavar="V", help="Representation bases V.")] = None,
    amp: AmpOpt = None,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointOpt = 500,
    preset: PresetOpt = "paper",
    config_file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_root: DataRootOpt = None,
    cache_dir: CacheOpt = None,
    image_size: ImageSizeOpt = None,
    classes: ClassesOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = "auto",
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Distil DATASET into a bundle of at most --budget image-equivalents."""
    with _session(quiet, verbose, debug, threads) as rep:
        from . import api

        settings = _settings("distill", config_file, assignments, budget=budget, num_steps=steps, max_minutes=minutes,
                             lr=lr, batch_size=batch_size, views="identity" if no_aug else views,
                             bases=False if no_bases else None, approx=False if no_approx else None, init=init,
                             num_images=num_images, image_rank=image_rank, repr_rank=repr_rank, amp=amp, seed=seed)
        result = api.distill_to_file(dataset, output, method=method, preset=preset, settings=settings, teacher=teacher,
                                     data=_data(data_root, cache_dir, image_size, classes, download),
                                     overwrite=overwrite, device=device, reporter=rep, on_plan=_print_plan,
                                     checkpoint_every=checkpoint_every, resume=resume)
        _render_distill(result, output, json_out)


def _print_plan(plan: Any, config: Any) -> None:
    report = plan.report
    table = Table(title="storage (floats / image-equivalents)", title_justify="left")
    for col in ("tensor", "group", "floats", "image-eq."):
        table.add_column(col, justify="right" if col in ("floats", "image-eq.") else "left")
    for key, group, n, eq in report.table():
        table.add_row(key, group, f"{n:,}", f"{eq:.2f}")
    table.add_row("[bold]total", "", f"[bold]{report.total_floats:,}", f"[bold]{report.image_equivalents:.2f}")
    table.caption = f"budget cost {report.cost:.2f} / {config.budget}" + (
        " (pixel method: the budget counts images only)" if report.images_only else "")
    err.print(table)


def _render_distill(result: Any, output: Path, json_out: bool) -> None:
    if not is_main():
        return
    fit = result.meta.fit
    if json_out:
        summary = {"output": str(output), "method": result.meta.method, "steps": fit["steps_done"],
                   "seconds": round(result.seconds, 1), "first_loss": fit["first_loss"], "final_loss": fit["final_loss"],
                   "storage": result.meta.storage, "approx_fit": fit["approx"], "drift": fit.get("drift")}
        out.print_json(json.dumps(summary))
        return
    if fit["steps_done"]:
        out.print(f"wrote {output}: {fit['steps_done']:,} steps in {result.seconds:.0f} s, outer loss "
                  f"{fit['first_loss']:.4g} → {fit['final_loss']:.4g}", highlight=False)
        out.print(f"  support moved {100 * fit['drift']['images']:.1f}% (images), {100 * fit['drift']['targets']:.1f}% "
                  "(targets) from its initialisation", highlight=False)
    else:
        out.print(f"wrote {output} (0 steps)", highlight=False)
    init = fit.get("init", {})
    if "image_fit_error_after" in init:
        out.print(f"  image fit: the teacher's relative error on the pairs {init['image_fit_error_before']:.3f} → "
                  f"{init['image_fit_error_after']:.3f}", highlight=False)
    for view, rel in fit["approx"].items():
        out.print(f"  approximation network {view}: relative error {rel['relative_error']:.3f} (1.0 = predicting no shift)")


# ------------------------------------------------------------------------------------------------
# inspect


@app.command()
def inspect(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Bundle (.safetensors) to describe.")],
    verify: Annotated[bool, typer.Option("--verify", help="Also rebuild every pair and check storage and budget.")] = False,
    json_out: JsonOpt = False,
    device: DeviceOpt = "cpu",
    debug: DebugOpt = False,
) -> None:
    """Show what is inside a bundle: method, sizes, views, teacher and the storage breakdown."""
    with _session(True, False, debug):
        from . import api

        summary = api.inspect_bundle(bundle, verify=verify, device=device)
        if json_out:
            out.print_json(json.dumps(summary, default=str))
            return
        _render_inspect(bundle, summary)


def _render_inspect(bundle: Path, summary: dict[str, Any]) -> None:
    st, c, t = summary["storage"], summary["counts"], summary["teacher"]
    table = Table(title=f"{bundle}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("method", summary["method"]),
        ("source", f"{summary['source']} ({summary['image_shape'][1]}px, {summary['image_space']} space)"),
        ("images", f"{summary['num_images']} × {len(summary['views'])} view(s) = {summary['num_pairs']} pairs"),
        ("views", ", ".join(summary["views"])),
        ("sizes", ", ".join(f"{k}={v}" for k, v in c.items() if v)),
        ("teacher", f"{t.get('arch')} {t.get('repr_dim')}-d, sha256 {str(t.get('sha256'))[:12]}"),
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
    for name, ok in summary.get("verify", {}).items():
        out.print(f"  [green]✓[/] {name}" if ok else f"  [red]✗[/] {name}")
    if "verify" in summary and summary["checksum"] is None:
        out.print("  [yellow]-[/] no checksum stored (format v1); the tensors were checked for shape and range only")


# ------------------------------------------------------------------------------------------------
# expand


@app.command()
def expand(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Bundle (.safetensors) to expand.")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", help="Folder to create.")],
    views: Annotated[Optional[str], typer.Option("--views", metavar="VIEWS", help="Comma-separated subset of the bundle's views (default: all).")] = None,
    no_png: Annotated[bool, typer.Option("--no-png", help="Only write the float tensors and the manifest.")] = False,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Rebuild every view's image and target: PNGs + a grid per view for people, float tensors for programs."""
    with _session(quiet, False, debug):
        from . import api

        m = api.expand_bundle(bundle, output, views=views, device=device, overwrite=overwrite, write_images=not no_png)
        out.print(f"wrote {m['num_pairs']} pairs ({m['num_images']} images × {len(m['views'])} views) "
                  f"to {output} in {m['seconds']:.1f} s", highlight=False)


# ------------------------------------------------------------------------------------------------
# evaluate


@app.command()
def evaluate(
    bundles: Annotated[Optional[list[Path]], typer.Argument(metavar="BUNDLE...", help="Bundles to evaluate side by side (omit with --baseline random and --teacher).")] = None,
    targets: Annotated[Optional[list[str]], typer.Option("--target", metavar="DATASET", help="Target dataset (repeatable; name, folder or archive with train/ and test/; default: the bundle's source).")] = None,
    archs: Annotated[Optional[list[str]], typer.Option("--arch", metavar="ARCH", help="Architecture pretrained on each set (repeatable; `ssdd models`; default: convnet3, convnet3_s with --preset cpu).")] = None,
    protocols: Annotated[Optional[list[str]], typer.Option("--protocol", metavar="linear|finetune|knn", help="Evaluation protocol (repeatable; default: linear).")] = None,
    baselines: Annotated[Optional[list[str]], typer.Option("--baseline", metavar="random|full|none", help="Also evaluate N random real images (random) or the whole source (full), with teacher targets (repeatable).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", "-N", metavar="N", help="Budget of the random baseline (default: the bundle's).")] = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", metavar="FILE", help="Teacher for the baselines and its own probe (default: the bundle's).")] = None,
    source: Annotated[Optional[str], typer.Option("--source", metavar="DATASET", help="Source dataset of the baselines (default: the bundle's).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", metavar="N", help="Pretraining epochs.")] = None,
    probe_steps: Annotated[Optional[int], typer.Option("--probe-steps", metavar="N", help="Linear-probe SGD steps.")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", metavar="N", help="Independent runs (paired across rows).")] = None,
    floor: Annotated[bool, typer.Option("--floor/--no-floor", help="Also report the no-pretraining floor.")] = True,
    teacher_probe: Annotated[bool, typer.Option("--teacher-probe/--no-teacher-probe", help="Also report the teacher's own probe accuracy.")] = True,
    report_dir: Annotated[Optional[Path], typer.Option("--report", metavar="DIR", help="Write report.md, report.json and PNG figures to this folder.")] = None,
    amp: AmpOpt = None,
    preset: PresetOpt = "paper",
    config_file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_root: DataRootOpt = None,
    cache_dir: CacheOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = "auto",
    seed: SeedOpt = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help="Also write the report as JSON to this file.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Pretrain a fresh model on each set's pairs, evaluate it on each --target, and compare with baselines."""
    with _session(quiet, verbose, debug, threads) as rep:
        from . import api

        settings = _settings("evaluate", config_file, assignments, archs=tuple(archs) if archs else None,
                             protocols=tuple(protocols) if protocols else None, pretrain_epochs=epochs,
                             probe_steps=probe_steps, num_seeds=seeds, amp=amp, seed=seed)
        config = api.eval_config(preset, **settings)
        request = api.EvalRequest(list(bundles or []), list(targets or []), source, teacher, budget,
                                  [] if baselines == ["none"] else list(baselines or []), floor, teacher_probe, json_path,
                                  report_dir, overwrite, _data(data_root, cache_dir, download=download))
        report = api.evaluate_bundle(request, config, device=device, reporter=rep)
        _render_report(report, config)
        for path in (json_path, report_dir):
            if path is not None and is_main():
                err.print(f"wrote {path}", markup=False)


def _render_report(report: Any, config: Any) -> None:
    if not is_main():  # under torchrun rank 0 holds the gathered table
        return
    ref = report.reference
    for arch, target, protocol in report.tables():
        table = Table(title=f"{protocol} on {target} ({arch}, {config.pretrain_epochs} ep pretraining, "
                            f"{config.num_seeds} seed(s))", title_justify="left")
        for col in ("set", "top-1 %", f"vs {ref.name.split(' (')[0]}" if ref else "vs -", "note"):
            table.add_column(col, justify="left" if col in ("set", "note") else "right")
        for row in report.rows:
            res = report.result(row.name, arch, target, protocol)
            if res is None:
                continue
            acc = f"{res.mean:.2f} ± {res.std:.2f}" if len(res.accuracies) > 1 else f"{res.mean:.2f}"
            diff = report.improvement(row.name, arch, target, protocol)
            shown = "" if diff is None else (f"{sum(diff) / len(diff):+.2f} ({', '.join(f'{d:+.2f}' for d in diff)})")
            table.add_row(row.name, acc, shown, row.note)
        out.print(table)


# ------------------------------------------------------------------------------------------------
# registries and settings


@app.command("models")
def models_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (docs/models.md).")] = False,
) -> None:
    """List the registered architectures with their parameter counts (without the head)."""
    from .models import list_models, model_entry
    from .models.registry import models_markdown

    if markdown:
        out.print(models_markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("name", "params (32 px)", "description")
    for name in list_models():
        entry = model_entry(name)
        table.add_row(name, f"{entry.params[32] / 1e6:.2f} M", entry.description)
    out.print(table)


@app.command("methods")
def methods_cmd() -> None:
    """List the registered distillation methods."""
    from .methods.registry import get_method

    table = Table("name", "budget counts", "description")
    for name in list_methods():
        entry = get_method(name)
        table.add_row(name.replace("_", "-"), "images" if entry.pixel_storage else "every float", entry.summary)
    out.print(table)


@app.command("doctor")
def doctor_cmd(cache_dir: CacheOpt = None, json_out: JsonOpt = False) -> None:
    """Print versions, devices, precision, threads and the cache: the lines to paste into a bug report."""
    with _session(True):
        from . import api

        report = api.environment_report(cache_dir)
        if json_out:
            out.print_json(json.dumps(report))
            return
        for key, value in report.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            out.print(f"{key:<16} {shown if shown != '' else 'none'}", highlight=False, markup=False)


@app.command("settings")
def settings_cmd(
    command: Annotated[str, typer.Argument(metavar="COMMAND", help="teacher, distill or evaluate.")] = "distill",
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (docs/config.md).")] = False,
) -> None:
    """List every setting of a command, for --set KEY=VALUE and --config FILE."""
    with _session(True):
        from .config import CONFIG_CLASSES, settings_markdown, settings_rows

        if command not in CONFIG_CLASSES:
            raise ConfigError(f"unknown command {command!r}; use {', '.join(CONFIG_CLASSES)}")
        if markdown:
            out.print(settings_markdown(command), markup=False, highlight=False, soft_wrap=True)
            return
        table = Table("key", "type", "default", "meaning", title=f"ssdd {command} settings (--set KEY=VALUE)")
        for row in settings_rows(command):
            table.add_row(*row)
        out.print(table)
