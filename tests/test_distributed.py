"""torchrun support: two gloo processes on the CPU reproduce the one-process run.

One module-scoped launch of two processes (``torch.multiprocessing.spawn``, the environment torchrun
would set) runs every scenario once; the tests compare what each rank returned with the same work
done here in one process. Two more tests launch ``torchrun -m ssdd_cli`` end to end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from conftest import IMAGE_SIZE, tiny_distill_config

from ssdd_cli import distributed

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

CPU = torch.device("cpu")
WORLD = 2
# Float tolerances: the split run sums the same terms in another order (per-rank partial sums, global
# BatchNorm statistics from all-reduced sums), so it agrees with one process to rounding, not bitwise.
LOSS_RTOL = 1e-5
TENSOR_ATOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _teacher_config():  # type: ignore[no-untyped-def]
    from ssdd_cli.config import teacher_config

    # SGD, not the preset's AdamW: the convolution biases feed BatchNorm, so their true gradient is zero and
    # AdamW would scale the rounding noise of that zero up to full steps, in one process as in two.
    return teacher_config("cpu", arch="convnet2_xs", num_steps=4, batch_size=16, warmup_steps=1, amp=False,
                          projector_dim=32, optimizer="sgd", lr=0.05)


DISTILL_CASES = {  # name: (method, overrides); 15 real images split 8 + 7, 16 split 8 + 8
    "krr_st": ("krr_st", dict(batch_size=15, num_steps=4)),
    "boost": ("boost", dict(num_steps=4)),
    "boost-cached": ("boost", dict(num_steps=4, teacher_cache=2)),
}


def _distill(case: str, teacher_path: Path, checkpoint: Path | None = None, resume: bool = False):  # type: ignore[no-untyped-def]
    from ssdd_cli import api
    from ssdd_cli.checkpoint import Checkpointing
    from ssdd_cli.data import make_shapes
    from ssdd_cli.methods.distill import run_identity

    data = make_shapes(num_train=64, num_test=32, image_size=IMAGE_SIZE, seed=0)
    teacher = api.load_teacher(teacher_path, CPU)
    method, overrides = DISTILL_CASES[case]
    cfg = tiny_distill_config(method, **overrides)
    ckpt = (Checkpointing(checkpoint, every=2, identity=run_identity("distill", cfg, data, teacher), resume=resume)
            if checkpoint is not None else None)
    return api.distill(data, teacher, cfg, device=CPU, checkpointing=ckpt)


def _teacher(checkpoint: Path | None = None, resume: bool = False):  # type: ignore[no-untyped-def]
    from ssdd_cli.checkpoint import Checkpointing
    from ssdd_cli.data import make_shapes
    from ssdd_cli.methods.distill import run_identity
    from ssdd_cli.teacher import train_teacher

    data = make_shapes(num_train=64, num_test=32, image_size=IMAGE_SIZE, seed=0)
    cfg = _teacher_config()
    ckpt = (Checkpointing(checkpoint, every=2, identity=run_identity("teacher", cfg, data), resume=resume)
            if checkpoint is not None else None)
    return train_teacher(data.train_images, mean=data.mean, std=data.std, config=cfg, device=CPU, checkpointing=ckpt)


def _helpers() -> dict[str, Any]:
    """The collectives on small, rank-dependent inputs."""
    r = distributed.rank()
    summed = distributed.all_reduce_sum(torch.tensor([1.0 + r, 10.0]))
    mean = distributed.all_reduce_mean(torch.tensor([2.0 * r]))
    x = torch.arange(6.0).view(3, 2).add(10 * r).requires_grad_()
    rows = distributed.gather_rows(x)
    (rows * torch.arange(1.0, 13.0).view(6, 2)).sum().backward()
    order = []
    with distributed.main_first():
        order.append(time.monotonic())
        time.sleep(0.2 if r == 0 else 0.0)
    return {"rank": r, "world": distributed.world_size(), "part": distributed.part(7), "sum": summed.tolist(),
            "mean": mean.tolist(), "rows": rows.detach().tolist(), "rows_grad": x.grad.tolist(),
            "gathered": distributed.gather_objects({"r": r}), "share": distributed.my_share("abcde"), "flags": distributed.any_flags([r == 1, False]),
            "broadcast": distributed.broadcast_object(f"from {r}"), "entered": order[0],
            "differ": distributed.replicas_differ([torch.tensor([float(r)])]),
            "same": distributed.replicas_differ([torch.tensor([1.0])])}


def _worker(rank: int, port: int, out: Path, teacher_path: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD), SSDD_CACHE=str(out / "cache"),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    assert distributed.setup("cpu") == CPU
    results: dict[str, Any] = {"helpers": _helpers()}
    for case in DISTILL_CASES:
        res = _distill(case, teacher_path)
        results[case] = {"losses": res.losses, "tensors": res.tensors, "fit": res.meta.fit}
    # resume: a run checkpointing every 2 steps leaves the checkpoint after step 2 of 4; continue from it
    ckpt = out / "resume.ckpt"
    full = _distill("krr_st", teacher_path, checkpoint=ckpt)
    again = _distill("krr_st", teacher_path, checkpoint=ckpt, resume=True)
    results["resume"] = {"full": full.tensors, "again": again.tensors, "losses": (full.losses, again.losses),
                         "checkpoint": ckpt}
    teacher, losses = _teacher(checkpoint=out / "teacher.ckpt")  # leaves the checkpoint after step 2 of 4
    again, again_losses = _teacher(checkpoint=out / "teacher.ckpt", resume=True)
    results["teacher"] = {"losses": losses, "state": teacher.model.state_dict(), "resumed_losses": again_losses,
                          "resumed_state": again.model.state_dict()}
    torch.save(results, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tiny_teacher_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of two gloo processes computed (see :func:`_worker`)."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("two-ranks")
    mp.spawn(_worker, args=(_free_port(), out, tiny_teacher_path), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_single_process_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched() and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.init_from_env(CPU) is False and not dist.is_initialized()
    assert distributed.part(7) == (0, 7)
    x = torch.ones(3, requires_grad=True)
    assert distributed.gather_rows(x) is x and distributed.global_mean(x, 3, 9) is x
    assert distributed.gather_objects(5) == [5] and distributed.any_flags([True, False]) == [True, False]
    assert distributed.my_share("abc") == list("abc") and distributed.broadcast_object(3) == 3
    assert distributed.replicas_differ([x]) is False
    from torch import nn

    net = nn.Sequential(nn.BatchNorm1d(4))
    assert distributed.global_batchnorm(net, CPU) is net and type(net[0]) is nn.BatchNorm1d


def test_collectives(ranks: list[dict[str, Any]]) -> None:
    h0, h1 = ranks[0]["helpers"], ranks[1]["helpers"]
    assert (h0["world"], h1["world"]) == (2, 2)
    assert (h0["part"], h1["part"]) == ((0, 4), (4, 7))
    assert h0["sum"] == h1["sum"] == [3.0, 20.0] and h0["mean"] == h1["mean"] == [1.0]
    assert h0["rows"] == h1["rows"] == [[0, 1], [2, 3], [4, 5], [10, 11], [12, 13], [14, 15]]
    # d/dx of Σ_ranks Σ (rows · w): each rank's rows get the weights of their place, once per rank
    assert h0["rows_grad"] == [[2.0, 4.0], [6.0, 8.0], [10.0, 12.0]]
    assert h1["rows_grad"] == [[14.0, 16.0], [18.0, 20.0], [22.0, 24.0]]
    assert h0["gathered"] == [{"r": 0}, {"r": 1}] and h1["gathered"] is None
    assert (h0["share"], h1["share"]) == (list("ace"), list("bd"))
    assert h0["flags"] == h1["flags"] == [True, False]
    assert h0["broadcast"] == h1["broadcast"] == "from 0"
    assert h1["entered"] >= h0["entered"] + 0.2  # main_first: rank 1 entered once rank 0's block was done
    assert h0["differ"] is h1["differ"] is True and h0["same"] is h1["same"] is False


@pytest.mark.parametrize("case", list(DISTILL_CASES))
def test_two_rank_distill_matches_one_process(case: str, ranks: list[dict[str, Any]], tiny_teacher_path: Path) -> None:
    one = _distill(case, tiny_teacher_path)
    r0, r1 = ranks[0][case], ranks[1][case]
    # the replicas agree bit for bit: the update is computed from the same summed gradient everywhere
    assert r0["losses"] == r1["losses"]
    assert all(torch.equal(r0["tensors"][k], r1["tensors"][k]) for k in r0["tensors"])
    assert r0["fit"]["processes"] == 2 and "processes" not in one.meta.fit
    # ... and equal the one-process run on the same global batches, to rounding
    assert r0["losses"] == pytest.approx(one.losses, rel=LOSS_RTOL)
    assert sorted(r0["tensors"]) == sorted(one.tensors)
    for key, value in one.tensors.items():
        torch.testing.assert_close(r0["tensors"][key], value, atol=TENSOR_ATOL, rtol=1e-4, msg=key)


def test_two_rank_resume_is_bit_identical(ranks: list[dict[str, Any]]) -> None:
    res = ranks[0]["resume"]
    assert res["losses"][0] == res["losses"][1]
    assert all(torch.equal(res["full"][k], res["again"][k]) for k in res["full"])
    t = ranks[0]["teacher"]
    assert t["resumed_losses"] == t["losses"]
    assert all(torch.equal(t["state"][k], t["resumed_state"][k]) for k in t["state"])


def test_one_process_resumes_a_two_process_checkpoint(ranks: list[dict[str, Any]], tiny_teacher_path: Path) -> None:
    """Checkpoints hold the global state only, so another number of processes can continue a run."""
    res = ranks[0]["resume"]
    again = _distill("krr_st", tiny_teacher_path, checkpoint=res["checkpoint"], resume=True)
    assert again.meta.fit["steps_done"] == 4 and again.losses[:1] == res["losses"][0][:1]  # step 1 from the checkpoint
    for key, value in res["full"].items():
        torch.testing.assert_close(again.tensors[key], value, atol=TENSOR_ATOL, rtol=1e-4, msg=key)


def test_two_rank_teacher_matches_one_process(ranks: list[dict[str, Any]]) -> None:
    one, losses = _teacher()
    r0, r1 = ranks[0]["teacher"], ranks[1]["teacher"]
    assert r0["losses"] == r1["losses"] and all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert len(losses) == 2 and r0["losses"] == pytest.approx(losses, rel=LOSS_RTOL)  # steps 1 and 4
    for key, value in one.model.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, atol=TENSOR_ATOL, rtol=1e-4, msg=key)


# ----------------------------------------------------------------------------------------------
# the command line under torchrun


def _torchrun(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``torchrun --nproc_per_node 2 -m ssdd_cli ARGS`` (torchrun as ``python -m torch.distributed.run``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ssdd_cli", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_torchrun_teacher_writes_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clihelp import invoke, ok

    from ssdd_cli.teacher import load_teacher

    args = ["teacher", "shapes", "--preset", "cpu", "--arch", "convnet2_xs", "--steps", "3", "--batch-size", "16",
            "--image-size", "16", "--no-probe", "--no-amp", "--device", "cpu", "--set", "projector_dim=32",
            "--set", "optimizer=sgd", "--set", "lr=0.05"]
    code, out, err = _finish(_torchrun([*args, "-o", "two.safetensors"], tmp_path))
    assert code == 0, err
    assert out.split() == ["two.safetensors"]  # rank 0 alone prints the result
    assert err.count("teacher: 3 steps") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.safetensors"]  # no checkpoint, no temporaries
    monkeypatch.chdir(tmp_path)
    ok(invoke(*args, "-o", "one.safetensors"))
    two, one = load_teacher("two.safetensors", CPU), load_teacher("one.safetensors", CPU)
    for key, value in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[key], value, atol=TENSOR_ATOL, rtol=1e-4, msg=key)


def test_torchrun_distill_interrupted_and_resumed(tiny_teacher_path: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from clihelp import invoke, ok

    from ssdd_cli.bundle import load_bundle

    args = ["distill", "shapes", "--method", "krr-st", "--teacher", str(tiny_teacher_path), "--preset", "cpu",
            "--steps", "60", "--budget", "8", "--batch-size", "15", "--image-size", "16", "--no-amp", "--device", "cpu",
            "--set", "pool_arch=convnet2_xs", "--set", "pool_size=2", "--set", "pool_online_steps=3", "-o", "b.safetensors"]
    proc = _torchrun([*args, "--checkpoint-every", "1"], tmp_path)
    ckpt = tmp_path / "b.safetensors.ckpt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # torchrun passes it on to both processes
    code, out, err = _finish(proc)
    assert code != 0 and ckpt.exists() and not (tmp_path / "b.safetensors").exists(), err
    assert "--resume" in err and out == ""
    code, out, err = _finish(_torchrun([*args, "--resume", "--checkpoint-every", "0"], tmp_path))
    assert code == 0, err
    assert out.count("wrote b.safetensors") == 1 and err.count("resuming from") == err.count("storage (floats") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.safetensors"]
    monkeypatch.chdir(tmp_path)
    ok(invoke(*args[:-1], "one.safetensors"))
    two, one = load_bundle("b.safetensors"), load_bundle("one.safetensors")
    assert two.meta.fit["steps_done"] == 60 and two.meta.fit["processes"] == 2
    assert two.meta.fit["final_loss"] == pytest.approx(one.meta.fit["final_loss"], rel=1e-4)
    for key, value in one.tensors.items():
        torch.testing.assert_close(two.tensors[key], value, atol=1e-4, rtol=1e-3, msg=key)
