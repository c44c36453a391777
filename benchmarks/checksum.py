"""Cost of the format-v2 checksum: reading a ~100 MB teacher-sized file with and without verification.

python benchmarks/checksum.py [--mb 100] [--repeats 3] [--out benchmarks/results/checksum.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open

from ssdd_cli import __version__
from ssdd_cli.bundle import load_tensors, save_tensors, tensor_checksum


def main() -> None:
    """Time a plain safetensors read, ssdd's verified read and the checksum alone; print a table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/checksum.json")
    args = ap.parse_args()
    n = int(args.mb * 1e6 / 4)
    gen = torch.Generator().manual_seed(0)
    tensors = {f"layer{i}.weight": torch.randn(n // 20, generator=gen) for i in range(20)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.safetensors"
        save_tensors(path, tensors, {"format": "ssdd.teacher"})
        size = path.stat().st_size

        def plain() -> None:
            with safe_open(str(path), framework="pt") as f:
                _ = {k: f.get_tensor(k) for k in f.keys()}

        for name, fn in (("plain safetensors read (lazy mmap)", plain), ("ssdd read (verifies checksum)", lambda: load_tensors(path)),
                         ("checksum alone", lambda: tensor_checksum(tensors))):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rows.append({"what": name, "s_median": statistics.median(times), "s_min": min(times)})
    record = {"name": "checksum", "file_mb": round(size / 1e6, 1), "torch": torch.__version__, "ssdd": __version__,
              "threads": torch.get_num_threads(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"{'what':<34}{'median s':>10}{'min s':>10}   ({record['file_mb']} MB file)")
    for r in rows:
        print(f"{r['what']:<34}{r['s_median']:>10.3f}{r['s_min']:>10.3f}")


if __name__ == "__main__":
    main()
