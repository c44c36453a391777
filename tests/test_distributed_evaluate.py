"""``ssdd evaluate`` under torchrun: two gloo processes give the one-process table, rank 0 alone writes it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _evaluate(bundle: Path, teacher: Path, out: Path | None):  # type: ignore[no-untyped-def]
    from ssdd_cli import api

    request = api.EvalRequest(bundles=[bundle], targets=["shapes"], teacher=teacher, baselines=["random"],
                              report_path=out, data=api.DataOptions(image_size=16))
    config = api.eval_config("cpu", archs=("convnet2_xs", "convnet3_s"), protocols=("linear", "knn"), num_seeds=2,
                             pretrain_epochs=2, probe_steps=20, knn_k=5, max_train_images=300, max_test_images=100)
    return api.evaluate_bundle(request, config, device="cpu")


def _worker(rank: int, port: int, bundle: Path, teacher: Path, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2", SSDD_CACHE=str(out / "cache"), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    report = _evaluate(bundle, teacher, out / "report.json")
    torch.save({"dict": report.to_dict(), "num_results": len(report.results)}, out / f"rank{rank}.pt")


def test_two_rank_evaluate_gives_the_one_process_table(tiny_results, tiny_teacher_path: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Two processes give the one-process table, seed by seed; only rank 0 holds it and writes the report.

    The (row, arch, seed) runs are split over the processes and gathered on rank 0.
    """
    import torch.multiprocessing as mp

    from ssdd_cli.bundle import save_bundle

    res = tiny_results["boost"]
    bundle = save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta)
    out = tmp_path / "two"
    out.mkdir()
    mp.spawn(_worker, args=(_free_port(), bundle, tiny_teacher_path, out), nprocs=2, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    monkeypatch.setenv("SSDD_CACHE", str(tmp_path / "cache1"))
    one = _evaluate(bundle, tiny_teacher_path, None).to_dict()
    two = ranks[0]["dict"]
    for key in ("seconds", "config"):
        one.pop(key), two.pop(key)
    for t1, t2 in zip(one["tables"], two["tables"]):
        for r1, r2 in zip(t1["rows"], t2["rows"]):
            assert r1 == r2, (t1["arch"], t1["protocol"], r1, r2)
    assert two == one
    assert ranks[1]["num_results"] == 0  # the other rank computed its share and handed it over
    written = json.loads((out / "report.json").read_text())
    assert written["tables"] == one["tables"] and len(one["tables"]) == 4
