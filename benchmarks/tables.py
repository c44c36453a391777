"""One command per table of the Boost paper (method.md §8.3), on the CPU preset or the full protocol.

* ``b1``: cross-architecture. One Boost and one KRR-ST set (ConvNet pool), and Random, at N = 100;
  each of six architectures pretrained on each set, linear probe on CIFAR-100.
* ``b2``: transfer. The same sets, ConvNet, linear probe on CIFAR-100, CIFAR-10 and an image-folder
  target (Imagenette, resized to the source's 32 px).

Every table carries the no-pretraining floor and the teacher's own probe, with paired seeds and the
improvement over Random. The sets are distilled once (or given with ``--boost``/``--krr``) and
reused by both tables. Writes ``benchmarks/results/<table>.json`` and prints the Markdown.

    python benchmarks/tables.py b1 --data-root ../shared/datasets --teacher benchmarks/teachers/cpu-convnet4s-4k.safetensors
    python benchmarks/tables.py b2 --data-root ../shared/datasets --teacher benchmarks/teachers/cpu-convnet4s-4k.safetensors

On a CPU the defaults shrink the protocol (fewer pretraining epochs for the large architectures, probe
and test subsets; stated in the JSON) and use the cpu preset's precision; ``--full`` (the default on
CUDA) runs method.md §7 as written (the paper preset's evaluation settings, with the ConvNet of the
sets' pool, ``convnet3_s`` here, standing in for ``convnet3``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ssdd_cli import __version__, api
from ssdd_cli.config import parse_assignments
from ssdd_cli.reporting import RichReporter
from ssdd_cli.storage import SIZINGS

ROOT = Path(__file__).resolve().parents[1]
B1_ARCHS = ("convnet3_s", "vgg11", "resnet18", "alexnet", "mobilenetv2", "vit")
# the cpu preset's ConvNet stands in for the paper's convnet3 (docs/cpu-preset.md)
B2_TARGETS = ("cifar100", "cifar10", "imagenette64_jpg.tar.gz")
#: reduced settings on a CPU, per table (method.md §7 otherwise)
CPU_SETTINGS = {
    "b1": dict(pretrain_epochs=20, probe_steps=1000, max_train_images=5000, max_test_images=2000),
    "b2": dict(pretrain_epochs=1000, probe_steps=2000),
}


def distilled(method: str, args: argparse.Namespace, data: api.DataOptions) -> Path:
    """The set of ``method`` at N = budget: given, already made by an earlier run, or distilled now."""
    given = args.boost if method == "boost" else args.krr
    if given:
        return Path(given)
    sha = api.load_teacher(args.teacher, torch.device("cpu")).sha256 or "unknown"
    sizing = f"-{args.sizing}" if method == "boost" else ""
    path = Path(args.work) / f"{method}-N{args.budget}-{args.steps}steps{sizing}-teacher{sha[:12]}.safetensors"
    if not path.exists():
        settings = {"budget": args.budget, "num_steps": args.steps, "seed": 0}
        if method == "boost":
            settings["sizing"] = args.sizing
        api.distill_to_file("cifar100", path, method=method, preset="cpu", teacher=args.teacher, data=data,
                            settings=settings,
                            reporter=RichReporter())
    return path


def main() -> None:
    """Distil (or reuse) the sets, evaluate the table, write its JSON and print its Markdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=["b1", "b2"])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--teacher", required=True, help="teacher file (the cpu preset's: benchmarks/teachers/)")
    ap.add_argument("--boost", help="Boost bundle to use instead of distilling one")
    ap.add_argument("--krr", help="KRR-ST bundle to use instead of distilling one")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1500,
                    help="outer steps of each distillation (the tables in docs/benchmarks.md used 1,500 with the "
                         "cpu preset of the time: paper sizing)")
    ap.add_argument("--sizing", choices=SIZINGS, default="paper",
                    help="Boost's sizing rule (docs/cpu-preset.md); the documented tables used paper")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--archs", default=None, help="comma-separated architectures [b1: the six of the paper]")
    ap.add_argument("--full", action="store_true", help="method.md §7 as written (the default on CUDA)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any evaluation setting")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "work"), help="where distilled sets are kept")
    ap.add_argument("--out", default=None, help="JSON path [benchmarks/results/<table>.json]")
    args = ap.parse_args()

    dev = api.resolve_device(args.device)
    full = args.full or dev.type == "cuda"
    data = api.DataOptions(data_root=args.data_root)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    bundles = [distilled("boost", args, data), distilled("krr_st", args, data)]
    archs = tuple(args.archs.split(",")) if args.archs else (B1_ARCHS if args.table == "b1" else ("convnet3_s",))
    settings = {} if full else dict(CPU_SETTINGS[args.table])
    settings.update(parse_assignments(args.set))
    config = api.eval_config("paper" if full else "cpu", archs=archs, num_seeds=args.seeds, **settings)
    targets = list(B2_TARGETS if args.table == "b2" else ("cifar100",))
    targets = [t if "." not in t else str(Path(args.data_root) / t) for t in targets]
    request = api.EvalRequest(bundles=bundles, targets=targets, teacher=args.teacher, baselines=["random"], data=data)
    t0 = time.perf_counter()
    report = api.evaluate_bundle(request, config, device=str(dev), reporter=RichReporter())
    record = {
        **report.to_dict(),
        "table": args.table,
        "protocol": "method.md §7" if full else f"CPU-reduced: {settings}",
        "bundles": [str(b) for b in bundles],
        "teacher": {"path": args.teacher, "sha256": api.load_teacher(args.teacher, torch.device("cpu")).sha256},
        "machine": {"cpu": platform.processor() or platform.machine(), "device": str(dev),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "ssdd": __version__},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{args.table}.json")
    out.write_text(json.dumps(record, indent=1))
    print(report.to_markdown())
    print(f"wrote {out} ({record['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
