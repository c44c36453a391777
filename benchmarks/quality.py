"""Quality benchmark: Random vs KRR-ST vs Boost at the same budget, CPU-sized protocol on CIFAR-100.

Protocol (docs/cpu-preset.md): the cached CPU-preset teacher (`ssdd teacher cifar100 --preset cpu`),
distillation with the cpu preset for a fixed number of outer steps, then for each seed a fresh
ConvNet (convnet3_s) pretrained on the set's pairs and linear-probed on CIFAR-100. Seeds are
paired: seed s gives the same random subset to Random and to the initialisation of KRR-ST/Boost,
and the same evaluation-model initialisation to every row. Prints a table and writes JSON.

    python benchmarks/quality.py --data-root ../shared/datasets --seeds 3 --out benchmarks/results/quality.json

Two more tables of the Boost paper, on the same protocol:

    --budgets 25,50,100,1000   Random, KRR-ST and Boost at each budget N (table B3) → budgets.json
    --ablation                 KRR-ST; + bases (identity view only); + views and approximation
                               networks (full Boost), in the paper's order (table B4) → ablation.json

A Boost evaluation at 32 px takes most of an hour of one core, so runs can be split over processes
and joined: `--reuse FILE` (repeatable) takes every row of the plan that FILE already measured under
the same protocol (teacher SHA-256, dataset, evaluation settings, the method's own settings, seed
and budget) instead of measuring it again, and says which file each came from. For example, seeds
run one per core, then one table of all of them:

    python benchmarks/quality.py --seeds 1 --seed-offset 3 --out s3.json   # and 4 on the other core
    python benchmarks/quality.py --seeds 2 --seed-offset 3 --reuse s3.json --reuse s4.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from ssdd_cli import __version__, api
from ssdd_cli.config import DistillConfig, distill_config, eval_config, parse_assignments
from ssdd_cli.device import bf16_is_fast
from ssdd_cli.errors import ConfigError
from ssdd_cli.teacher.model import Teacher
from ssdd_cli.views import DEFAULT_VIEWS


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# Parameters that decide a row's result, beyond its seed, method, budget and row overrides; with the
# value a record written before the parameter existed was measured with.
COMMON = {"dataset": None, "epochs": 1000, "probe_steps": 5000, "arch": "convnet3_s", "precision": "auto"}
PER_METHOD = {"random": {}, "krr_st": {"krr_steps": 1000, "krr_set": [], "teacher_cache": 0},
              "boost": {"boost_steps": None, "boost_set": [], "teacher_cache": 0},
              "floor": {}, "teacher_probe": {}}  # the two reference rows every table quotes
REFERENCE_ROWS = ("floor", "teacher_probe")


def run_key(record: dict, run: dict) -> str:
    """What a measured row depends on, as a string: rows with equal keys measure the same thing.

    A distilled row is keyed by its resolved distillation settings (the preset's values with every
    override applied), so a row measured with ``--boost-set K=V`` matches a later preset that ships ``K=V``,
    and a row of an earlier preset never passes for one of today's.
    """
    params = record["params"]
    method = run["method"]
    wanted = {**COMMON, **PER_METHOD[method]}
    if method in REFERENCE_ROWS:  # no pretraining on a set
        del wanted["epochs"]
    key = {k: params.get(k, default) for k, default in wanted.items()}
    if method in SETTINGS_KEYED:
        key = {k: v for k, v in key.items() if k in COMMON}
        key["settings"] = {**SETTING_DEFAULTS, **(run.get("settings") or settings_of(record, run))}
        key["settings"].pop("seed", None)
        settings = key["settings"]
        if not (settings["image_fit_steps"] and settings["approx"] and len(settings["views"]) > 1):
            settings.pop("image_fit_targets")  # what the fit aims at matters only where networks serve views
    key.update(teacher=record["teacher"]["sha256"], method=method, seed=run["seed"], budget=run["budget"])
    if method not in SETTINGS_KEYED:  # a distilled row's overrides are in its settings already
        key["set"] = run.get("set", {})
    return json.dumps(key, sort_keys=True, default=str)


SETTINGS_KEYED = ("krr_st", "boost")
SETTING_DEFAULTS = {f.name: f.default for f in fields(DistillConfig)}
# Rows of records written before each run stored its resolved settings were measured with today's cpu
# preset except for these values: they predate the preset's image fit and its identity-only Boost (both
# December 2026), so they ran the three rotations with networks and a fit, where asked for, at the exact targets.
LEGACY_PRESET: dict[str, dict[str, object]] = {
    "boost": {"image_fit_steps": 0, "image_fit_targets": "exact", "views": DEFAULT_VIEWS, "approx": True},
    "krr_st": {}}
# ... except where the preset changed within that time: KRR-ST's outer lr and pool width changed twice before
# records stored settings, so such a row is only keyed when its record names both.
LEGACY_NAMED: dict[str, tuple[str, ...]] = {"boost": (), "krr_st": ("lr", "pool_arch")}


def settings_of(record: dict, run: dict) -> dict:
    """The distillation settings a row of ``record`` ran with, resolved as :func:`main` resolves them."""
    params = {**COMMON, **PER_METHOD[run["method"]], **record["params"]}
    method = run["method"]
    steps = params["krr_steps"] if method == "krr_st" else params["boost_steps"]
    amp = {"auto": None, "fp32": False, "bf16": True}[params["precision"]]
    legacy = "image_size" not in record  # written before rows stored their settings
    given = {**parse_assignments(params["krr_set" if method == "krr_st" else "boost_set"]), **run.get("set", {})}
    unnamed = [k for k in LEGACY_NAMED[method] if k not in given] if legacy else []
    if unnamed:
        raise ConfigError(f"a {method} row of an earlier preset that does not name {', '.join(unnamed)}")
    cfg = distill_config(method, "cpu", record.get("image_size", 32), budget=run["budget"], num_steps=steps, amp=amp,
                         teacher_cache=params["teacher_cache"] if steps else None,
                         **{**(LEGACY_PRESET[method] if legacy else {}), **given})
    return json.loads(json.dumps(asdict(cfg), default=str))


def pair_error(teacher: Teacher, xs: torch.Tensor, ys: torch.Tensor) -> float:
    """The teacher's relative error on a set's pairs as delivered (0 = every target is the teacher's own output)."""
    with torch.no_grad():
        own = torch.cat([teacher.represent_normalized(x.to(teacher.device)).cpu() for x in xs.split(1024)])
        ys = ys.cpu()
    return round(float((own - ys).norm() / ys.norm().clamp_min(1e-12)), 4)


def reusable_runs(paths: list[str], fingerprint: str) -> dict[str, dict]:
    """Rows measured in earlier records on the same training images, by :func:`run_key` (first file wins).

    A record whose data fingerprint differs is skipped whole; one written before records carried a
    fingerprint is matched by dataset name.
    """
    found: dict[str, dict] = {}
    for path in paths:
        try:
            rec = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: --reuse {path}: cannot read it as a quality record ({e})") from None
        if rec.get("data_fingerprint", fingerprint) != fingerprint:
            print(f"--reuse {path}: measured on other training images, not reused", flush=True)
            continue
        refs = [{"method": k, "seed": 0, "budget": 0, "accuracy": rec[k]} for k in REFERENCE_ROWS if k in rec]
        for run in [*rec.get("runs", []), *refs]:
            try:
                key = run_key(rec, run)
            except ConfigError:  # a setting today's ssdd no longer has: not the same measurement
                continue
            found.setdefault(key, {**run, "reused_from": str(path)})
    return found


def plan_rows(args: argparse.Namespace) -> list[dict]:
    """The table's rows: label, method, budget and per-row setting overrides."""
    if args.ablation:  # table B4, in the paper's order
        return [{"row": "krr_st", "method": "krr_st", "budget": args.budget},
                {"row": "+bases", "method": "boost", "budget": args.budget,
                 "set": {"views": "identity", "approx": "false"}},
                {"row": "+views+approx", "method": "boost", "budget": args.budget,
                 "set": {"views": ",".join(DEFAULT_VIEWS), "approx": "true"}}]
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else [args.budget]
    methods = args.methods.split(",")
    return [{"row": f"{m}@{n}" if args.budgets else m, "method": m, "budget": n} for n in budgets for m in methods]


def pairs_of(rows_spec: list[dict]) -> list[tuple[str, str]]:
    """Rows compared seed by seed.

    In the ablation each row against the one before it and the full method against KRR-ST; otherwise, at each budget, KRR-ST and Boost against Random and Boost against KRR-ST,
    plus Boost at the smallest budget against Random at the next (the paper's "N = 25 beats Random at 100").
    """
    labels = [r["row"] for r in rows_spec]
    if "+bases" in labels:
        return [*zip(labels[1:], labels[:-1], strict=True), (labels[-1], labels[0])]
    row = {(r["method"], r["budget"]): r["row"] for r in rows_spec}
    budgets = sorted({r["budget"] for r in rows_spec})
    wanted = [((a, n), (b, n)) for n in budgets for a, b in (("krr_st", "random"), ("boost", "random"), ("boost", "krr_st"))]
    if len(budgets) > 1:
        wanted.append((("boost", budgets[0]), ("random", budgets[1])))
    return [(row[a], row[b]) for a, b in wanted if a in row and b in row]


def markdown(record: dict) -> str:
    """The record's table in Markdown: floor and teacher probe, each row with its seeds, then the paired differences."""
    seeds = sorted({r["seed"] for r in record["runs"]})
    label = lambda r: r.get("row", r["method"])  # noqa: E731 (records before rows had labels)
    per = {(label(r), r["seed"]): r["accuracy"] for r in record["runs"]}
    lines = [f"{record['dataset']} linear probe (top-1 %), `{record['arch']}`, seeds {', '.join(map(str, seeds))}",
             "", "| set | top-1 % | per seed |", "|---|---|---|",
             f"| no pretraining (floor) | {record['floor']:.2f} | |",
             f"| teacher's own features | {record['teacher_probe']:.2f} | |"]
    for row in record["summary"]:
        vals = ", ".join(f"{per[(label(row), s)]:.2f}" for s in seeds if (label(row), s) in per)
        lines.append(f"| {label(row)} | {row['mean']:.2f} ± {row['std']:.2f} | {vals} |")
    for name, d in record["paired"].items():
        a, b = name.split("-", 1)  # row labels hold no "-"
        vals = ", ".join(f"{v:+.2f}" for v in d["per_seed"])
        positive = sum(v > 0 for v in d["per_seed"])
        lines.append(f"| {a} − {b} | {d['mean']:+.2f} ± {d['std']:.2f} ({positive}/{len(d['per_seed'])} seeds > 0) "
                     f"| {vals} |")
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    """The record as a PNG: accuracy against budget per method (table B3), else one bar per row; floor and teacher dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["summary"]
    fig, ax = plt.subplots(figsize=(6, 4))
    budgets = sorted({r.get("budget", record["budget"]) for r in rows})
    if len(budgets) > 1:
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["budget"], r["mean"], r["std"]) for r in rows if r["method"] == method)
            ax.errorbar([b for b, _, _ in pts], [m for _, m, _ in pts], yerr=[s for _, _, s in pts], marker="o",
                        capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("budget N (image-equivalents)")
    else:
        names = [r.get("row", r["method"]) for r in rows]
        ax.bar(names, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], capsize=3, color="tab:blue")
        ax.set_ylim(bottom=min(record["floor"], *(r["mean"] for r in rows)) - 2)
    ax.axhline(record["teacher_probe"], color="k", ls="--", lw=1, label=f"teacher's own features {record['teacher_probe']:.1f}")
    ax.axhline(record["floor"], color="gray", ls=":", lw=1, label=f"no pretraining {record['floor']:.1f}")
    seeds = len({r["seed"] for r in record["runs"]})
    ax.set_ylabel("linear-probe top-1 %")
    ax.set_title(f"{record['dataset']}, {record['arch']}, {seeds} paired seed{'s' if seeds > 1 else ''}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Run the paired-seed comparison, print the table and write the JSON record."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar100")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--teacher", default=None, help="teacher file [default: the cached cpu-preset teacher]")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--krr-steps", type=int, default=None,
                    help="KRR-ST outer steps [default: the cpu preset's] (tables before December 2026 ran 1,000)")
    ap.add_argument("--boost-steps", type=int, default=None,
                    help="Boost outer steps [default: the cpu preset's, 0: the initialised set]")
    ap.add_argument("--epochs", type=int, default=1000, help="pretraining epochs on each set")
    ap.add_argument("--probe-steps", type=int, default=5000)
    ap.add_argument("--arch", default="convnet3_s")
    ap.add_argument("--methods", default="random,krr_st,boost")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="pool ConvNets and evaluation: auto (bf16 where it is fast, the cpu preset), or force one")
    ap.add_argument("--teacher-cache", type=int, default=0,
                    help="distil with a teacher cache of this many views instead of a teacher forward per step")
    ap.add_argument("--boost-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a Boost distillation setting (repeatable), e.g. --boost-set num_images=400")
    ap.add_argument("--krr-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a KRR-ST distillation setting (repeatable)")
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed (seeds are offset … offset+seeds-1)")
    ap.add_argument("--budgets", default=None, help="comma-separated budgets N: table B3 (Random, KRR-ST, Boost at each)")
    ap.add_argument("--ablation", action="store_true", help="table B4: KRR-ST; + bases; + views and approximation networks")
    ap.add_argument("--reuse", action="append", default=[], metavar="FILE",
                    help="take rows already measured under the same protocol from this record (repeatable)")
    ap.add_argument("--out", default=None,
                    help="JSON record [default: benchmarks/results/quality.json, budgets.json or ablation.json]")
    ap.add_argument("--dry-run", action="store_true",
                    help="list the rows, which earlier record (--reuse) holds each and which would be measured; run nothing")
    ap.add_argument("--show", default=None, metavar="FILE", help="print the Markdown table of a saved record and exit")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="also draw the table: accuracy against N with --budgets, else one bar per row (needs matplotlib)")
    args = ap.parse_args()
    if args.show:
        try:
            shown = json.loads(Path(args.show).read_text())
            print(markdown(shown))
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"error: --show {args.show}: not a finished quality record ({e})") from None
        if args.plot:
            plot(shown, Path(args.plot))
        return

    dev = api.resolve_device(args.device)
    data = api.load_dataset(args.dataset, data_root=args.data_root)
    tpath = Path(args.teacher) if args.teacher else api.default_teacher_path(data.name, data.image_size)
    if not tpath.exists():
        raise SystemExit(f"no teacher at {tpath}; run: ssdd teacher {args.dataset} --preset cpu --data-root {args.data_root}")
    teacher = api.load_teacher(tpath, dev)
    amp = {"auto": None, "fp32": False, "bf16": True}[args.precision]  # None keeps the preset's choice
    ecfg = eval_config("cpu", archs=(args.arch,), pretrain_epochs=args.epochs, probe_steps=args.probe_steps, amp=amp)
    if args.krr_steps is None:  # recorded resolved, so a later change of the preset cannot make old rows look current
        args.krr_steps = distill_config("krr_st", "cpu", data.image_size, budget=args.budget).num_steps
    rows_spec = plan_rows(args)
    out = Path(args.out or f"benchmarks/results/{'budgets' if args.budgets else 'ablation' if args.ablation else 'quality'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record: dict = {
        "name": "quality", "dataset": data.name, "budget": args.budget, "arch": args.arch, "device": str(dev),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_fast": bf16_is_fast(dev),
        "torch": torch.__version__, "ssdd": __version__, "teacher": teacher.describe(),
        "data_fingerprint": data.fingerprint(), "image_size": data.image_size, "params": vars(args), "runs": [],
    }

    def save() -> None:
        out.write_text(json.dumps(record, indent=1))

    t0 = time.perf_counter()
    earlier = reusable_runs(args.reuse, record["data_fingerprint"])
    extra = {"boost": parse_assignments(args.boost_set), "krr_st": parse_assignments(args.krr_set)}

    def config_of(spec: dict, seed: int) -> DistillConfig:
        method = spec["method"]
        steps = {"krr_st": args.krr_steps, "boost": args.boost_steps}.get(method)  # random: no outer loop
        return distill_config(method, "cpu", data.image_size, budget=spec["budget"], num_steps=steps, seed=seed,
                              amp=amp, teacher_cache=args.teacher_cache if steps else None,
                              **{**extra.get(method, {}), **spec.get("set", {})})

    def planned_settings(spec: dict, seed: int) -> dict:
        return json.loads(json.dumps(asdict(config_of(spec, seed)), default=str))

    def reference(name: str, measure) -> float:  # type: ignore[no-untyped-def]
        done = earlier.get(run_key(record, {"method": name, "seed": 0, "budget": 0}))
        return done["accuracy"] if done is not None else measure()

    if args.dry_run:  # which rows an earlier record already holds, and which would be measured
        for name in REFERENCE_ROWS:
            done = earlier.get(run_key(record, {"method": name, "seed": 0, "budget": 0}))
            print(f"{name:24s} " + (f"{done['accuracy']:.2f} from {done['reused_from']}" if done else "to measure"))
        for seed in range(args.seed_offset, args.seed_offset + args.seeds):
            for spec in rows_spec:
                info = {"seed": seed, "method": spec["method"], "budget": spec["budget"], "set": spec.get("set", {})}
                if spec["method"] in SETTINGS_KEYED:
                    info["settings"] = planned_settings(spec, seed)
                done = earlier.get(run_key(record, info))
                where = f"{done['accuracy']:.2f} from {done['reused_from']}" if done else "to measure"
                print(f"{spec['row'] + f' seed {seed}':24s} {where}")
        return
    floor = reference("floor", lambda: api.evaluate_pairs(
        torch.zeros(1, 3, data.image_size, data.image_size), torch.zeros(1, teacher.repr_dim), data,
        eval_config("cpu", archs=(args.arch,), pretrain_epochs=0, probe_steps=args.probe_steps, amp=amp),
        seed=0, device=dev))
    record["floor"] = floor
    record["teacher_probe"] = reference("teacher_probe", lambda: api.teacher_probe_accuracy(teacher, data, ecfg, device=dev))
    print(f"floor (no pretraining) {floor:.2f}  teacher probe {record['teacher_probe']:.2f}", flush=True)
    save()
    for seed in range(args.seed_offset, args.seed_offset + args.seeds):
        for spec in rows_spec:
            t1 = time.perf_counter()
            method = spec["method"]
            info: dict = {"seed": seed, "method": method, "row": spec["row"], "budget": spec["budget"]}
            if spec.get("set"):
                info["set"] = spec["set"]
            cfg = config_of(spec, seed)
            if method in SETTINGS_KEYED:
                info["settings"] = planned_settings(spec, seed)
            done = earlier.get(run_key(record, info))
            if done is not None:
                info = {**done, **{k: info[k] for k in ("row", "settings") if k in info}}
            else:
                res = api.distill(data, teacher, cfg, device=dev)
                with torch.no_grad():
                    xs, ys = res.synthetic.support()
                fit = res.meta.fit
                if method != "random":
                    info.update(steps=fit["steps_done"], distill_seconds=round(res.seconds, 1), approx=fit.get("approx", {}),
                                drift=fit.get("drift"), init=fit.get("init", {}), pair_error=pair_error(teacher, xs, ys))
                if fit["steps_done"]:
                    info.update(first_loss=fit["first_loss"], final_loss=fit["final_loss"])
                info.update(storage=res.meta.storage["cost"], counts=res.meta.counts, pairs=int(xs.shape[0]))
                acc = api.evaluate_pairs(xs, ys, data, ecfg, seed=seed, device=dev)
                info.update(accuracy=acc, seconds=round(time.perf_counter() - t1, 1))
            record["runs"].append(info)
            save()
            print(json.dumps(info), flush=True)
    labels = [spec["row"] for spec in rows_spec]
    by = {r: [x["accuracy"] for x in record["runs"] if x["row"] == r] for r in labels}
    rows = []
    for r, spec in zip(labels, rows_spec, strict=True):
        mu, sd = mean_std(by[r])
        rows.append({"row": r, "method": spec["method"], "budget": spec["budget"], "mean": round(mu, 2),
                     "std": round(sd, 2), "n": len(by[r])})
    paired = {}
    for a, b in pairs_of(rows_spec):
        d = [x - y for x, y in zip(by[a], by[b], strict=True)]
        mu, sd = mean_std(d)
        paired[f"{a}-{b}"] = {"mean": round(mu, 2), "std": round(sd, 2), "per_seed": [round(v, 2) for v in d],
                              "positive_seeds": sum(v > 0 for v in d)}
    record.update(summary=rows, paired=paired, wall_s=round(time.perf_counter() - t0, 1))
    save()
    print()
    print(markdown(record))
    if args.plot:
        plot(record, Path(args.plot))


if __name__ == "__main__":
    main()
