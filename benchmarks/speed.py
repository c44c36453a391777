"""Speed benchmark: seconds per outer step (KRR-ST, Boost), pool warm-up, expansion throughput, PCA.

Runs on the built-in `shapes` data (no download) with a freshly initialised CPU-preset teacher, so
it measures compute only. Prints a table and writes JSON.

    python benchmarks/speed.py --steps 20 --out benchmarks/results/speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ssdd_cli import __version__, api
from ssdd_cli.bundle import Bundle
from ssdd_cli.config import distill_config
from ssdd_cli.device import bf16_is_fast, sync
from ssdd_cli.methods.init import downsample_flat
from ssdd_cli.methods.pca import pca
from ssdd_cli.models import create_model
from ssdd_cli.teacher import Teacher


def _time_pca(n: int, repeats: int, dev: torch.device) -> list[dict]:
    """Image-basis PCA as Boost's initialisation runs it: n CIFAR-sized images, streamed in chunks."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    rows = []
    for side, rank in ((16, 200), (32, 200)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            pca(lambda side=side: downsample_flat(images, side, mean, std), rank, dim=3 * side * side, device=dev)
            sync(dev)
            times.append(time.perf_counter() - t0)
        rows.append({"what": f"PCA {n:,} images at {side}px (U={rank})", "pairs": n,
                     "s_mean": statistics.fmean(times), "s_std": statistics.pstdev(times)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _time_writing(bundle: Bundle, xs: torch.Tensor, ys: torch.Tensor, png_pairs: int = 10_000) -> dict:
    """Writing what expand writes: the float pairs as safetensors (all) and PNGs (the first ``png_pairs``)."""
    import tempfile

    from ssdd_cli.bundle import save_tensors
    from ssdd_cli.expand import save_pngs, to_uint8

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_tensors(Path(tmp) / "pairs.safetensors", {"images": xs.cpu(), "targets": ys.cpu()}, {})
        tensors_s = time.perf_counter() - t0
        pix = to_uint8(xs[:png_pairs], bundle)
        t0 = time.perf_counter()
        save_pngs([(pix[i], Path(tmp) / f"{i:06d}.png") for i in range(png_pairs)])
        png_s = time.perf_counter() - t0
    return {"what": "expand writing", "pairs": xs.shape[0], "s_mean": tensors_s, "s_std": 0.0,
            "safetensors_pairs_per_s": xs.shape[0] / tensors_s, "png_pairs": png_pairs, "png_s": png_s,
            "png_pairs_per_s": png_pairs / png_s}


def main() -> None:
    """Time each part named by --parts, print the table and write the JSON record."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pool-online-steps", type=int, default=20,
                    help="pool re-initialisation period during timing (the cpu preset uses 100; warm-up cost only)")
    ap.add_argument("--pool-arch", default="convnet3_s",
                    help="pool ConvNet of both methods (convnet3_s: every recorded figure; the cpu preset's KRR-ST "
                         "now uses convnet3, Boost runs no outer steps)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=["auto", "both", "fp32"], default="auto",
                    help="auto: fp32, plus bf16 where the hardware runs it fast; both: always time bf16 too")
    ap.add_argument("--parts", default="krr_st,boost,expand,pca",
                    help="comma-separated subset of krr_st, boost, expand, pca")
    ap.add_argument("--pca-images", type=int, default=50_000, help="images in the PCA timing (CIFAR train size)")
    ap.add_argument("--against-reference", metavar="PATH", default=None,
                    help="time the reference KRR-ST code at PATH side by side with ssdd (paper configuration)")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--reference-data", default="cifar100", help="real data of --against-reference (cifar100 or shapes)")
    ap.add_argument("--teacher-cache", type=int, default=0,
                    help="with --against-reference: also time ssdd with a teacher cache of this many views")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    args = ap.parse_args()
    if args.against_reference:
        _run_against_reference(args)
        return
    parts = set(args.parts.split(","))
    unknown = parts - {"krr_st", "boost", "expand", "pca"}
    if unknown:
        ap.error(f"unknown --parts {sorted(unknown)}; choose from krr_st, boost, expand, pca")
    dev = api.resolve_device(args.device)
    data = api.load_dataset("shapes")
    teacher = Teacher(create_model("convnet4_s", image_size=32, seed=0), arch="convnet4_s", image_size=32,
                      mean=data.mean, std=data.std).to(dev)
    amps = [False] + ([True] if args.precision == "both" or (args.precision == "auto" and bf16_is_fast(dev)) else [])
    rows = []
    for method in [m for m in ("krr_st", "boost") if m in parts]:
        for amp in amps:
            per_step = []
            for rep in range(args.repeats):
                # A short pool cycle keeps the (identical, seeded) warm-up of both runs cheap; the
                # per-step figure is the difference of a 1-step run and a (steps+1)-step run divided by
                # the steps (a 0-step run skips the pool warm-up, so it would not cancel it).
                # Boost at the paper's sizing (m = N): the support every documented speed figure used.
                base = dict(budget=args.budget, batch_size=args.batch_size, amp=amp, seed=rep, pool_arch=args.pool_arch,
                            pool_online_steps=args.pool_online_steps, **({"sizing": "paper"} if method == "boost" else {}))
                warm = api.distill(data, teacher, distill_config(method, "cpu", 32, num_steps=1, **base), device=dev)
                sync(dev)
                full = api.distill(data, teacher, distill_config(method, "cpu", 32, num_steps=args.steps + 1, **base),
                                   device=dev)
                sync(dev)
                per_step.append((full.seconds - warm.seconds) / args.steps)
            rows.append({"what": f"{method} outer step", "amp": amp, "pool": full.meta.config["pool_arch"],
                         "pairs": int(full.synthetic.support()[0].shape[0]),
                         "s_mean": statistics.fmean(per_step), "s_std": statistics.pstdev(per_step),
                         "setup_s": round(warm.seconds, 2)})
            print(json.dumps(rows[-1]), flush=True)
    if "expand" in parts:
        # expansion throughput: a Boost-style bundle with m = 25,000 images x 4 views = 100,000 pairs
        res = api.distill(data, teacher, distill_config("boost", "cpu", 32, budget=args.budget, num_steps=0, sizing="paper",
                                                        pool_online_steps=args.pool_online_steps), device=dev)
        t = dict(res.tensors)
        m = 25_000
        gen = torch.Generator().manual_seed(0)
        t["image_coeffs"] = torch.randn(m, t["image_coeffs"].shape[1], generator=gen)
        t["repr_coeffs"] = torch.randn(m, t["repr_coeffs"].shape[1], generator=gen)
        bundle = Bundle(t, res.meta)
        t0 = time.perf_counter()
        xs, ys = api.expand_pairs(bundle, device=dev)  # fresh output: the OS page-faults 1.2 GB in
        sync(dev)
        first = time.perf_counter() - t0
        times = []
        for _ in range(max(args.repeats, 2)):
            t0 = time.perf_counter()
            api.expand_pairs(bundle, device=dev, out=(xs, ys))  # decoding only, into the same memory
            sync(dev)
            times.append(time.perf_counter() - t0)
        warm = statistics.median(times)
        rows.append({"what": "expand 100,000 pairs (32px)", "pairs": 100_000, "s_mean": warm,
                     "s_std": statistics.pstdev(times), "s_first_call": first,
                     "pairs_per_s": 100_000 / warm, "pairs_per_s_first_call": 100_000 / first})
        print(json.dumps(rows[-1]), flush=True)
        rows.append(_time_writing(bundle, xs, ys))
        print(json.dumps(rows[-1]), flush=True)
        del xs, ys
    if "pca" in parts:
        rows.extend(_time_pca(args.pca_images, args.repeats, dev))
    expand_rate = next((r["pairs_per_s"] for r in rows if r["what"].startswith("expand")), None)
    record = {"name": "speed", "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "expand_pairs_per_s": expand_rate, **_reference_ratios(Path(args.out)),
              "cpu": platform.processor() or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "bf16_fast": bf16_is_fast(dev),
              "ssdd": __version__, "params": vars(args), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"\n{'what':<32}{'amp':>6}{'pairs':>8}{'seconds':>14}")
    for r in rows:
        print(f"{r['what']:<32}{str(r.get('amp', '')):>6}{r['pairs']:>8}{r['s_mean']:>10.3f} ± {r['s_std']:.3f}")


def _reference_ratios(speed_json: Path) -> dict:
    """The side-by-side ratios of the last ``--against-reference`` run beside ``speed_json`` (if any)."""
    src = speed_json.parent / "speed_vs_reference_cached.json"
    if not src.exists():
        return {"ratio_same_semantics": None, "ratio_cached": None}
    ref = json.loads(src.read_text())
    return {"ratio_same_semantics": ref.get("ratio_same_semantics"), "ratio_cached": ref.get("ratio_cached"),
            "ratios_from": str(src)}


def _run_against_reference(args: argparse.Namespace) -> None:
    from reference_side import against_reference

    dev = api.resolve_device(args.device)
    res = against_reference(Path(args.against_reference), data_root=args.data_root, repeats=max(args.repeats, 3),
                            online_steps=args.pool_online_steps, device=dev, dataset=args.reference_data,
                            teacher_cache=args.teacher_cache)
    record = {"name": "speed-vs-reference", "device": str(dev), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "ssdd": __version__, **res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    speed = Path(args.out).parent / "speed.json"  # the summary file carries the latest ratios at its top level
    if speed.exists() and Path(args.out).name == "speed_vs_reference_cached.json":
        summary = json.loads(speed.read_text())
        summary.update(_reference_ratios(speed))
        speed.write_text(json.dumps(summary, indent=1))
    print(f"\n{'what':<40}{'median s':>10}{'min s':>10}")
    for r in res["rows"]:
        print(f"{r['what']:<40}{r['s_median']:>10.3f}{r['s_min']:>10.3f}")
    for name, ratio in res["ratios_vs_reference"].items():
        print(f"{name} is {ratio:.2f}x the reference's speed")
    print(f"\nwhere an ssdd step goes ({res['breakdown_s']['precision']}, median s):")
    for name, sec in res["breakdown_s"].items():
        if name != "precision":
            print(f"  {name:<40}{sec:8.3f}")
    fl = res["floor"]
    print(f"FLOPs per step {res['flops']['total'] / 1e9:,.0f} G; at this machine's {fl['precision']} matmul speed "
          f"({fl['matmul_flops_per_s'] / 1e9:,.0f} GFLOP/s) that is {fl['step_s_at_matmul_speed']:.3f} s")
    print(f"peak RSS {res['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
