"""Checkpoint and resume: an interrupted run, resumed, is bit-identical to the uninterrupted one (CPU)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import tiny_distill_config

from ssdd_cli import api
from ssdd_cli.checkpoint import Checkpointing
from ssdd_cli.errors import ConfigError, Interrupted
from ssdd_cli.methods import pool as pool_mod
from ssdd_cli.methods.distill import run_identity

CPU = torch.device("cpu")


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, call: int, how: str) -> None:
    """Make the ``call``-th call of ``owner.name`` deliver SIGINT to this process, or die like a killed run."""
    original = getattr(owner, name)
    count = {"n": 0}

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        count["n"] += 1
        if count["n"] == call:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGINT)  # handled: the step finishes, then the state is saved
            else:
                raise RuntimeError("killed")  # no handler runs: only the periodic checkpoint survives
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


@pytest.mark.parametrize("method", ["krr_st", "boost"])
@pytest.mark.parametrize("how", ["signal", "kill"])
def test_distill_resume_is_bit_identical(method: str, how: str, tiny_data, tiny_teacher, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_distill_config(method, num_steps=7, pool_online_steps=2)  # pool resets happen before and after
    full = api.distill(tiny_data, tiny_teacher, cfg, device=CPU)
    ckpt = Checkpointing(tmp_path / "b.ckpt", every=2, identity=run_identity("distill", cfg, tiny_data, tiny_teacher))
    with monkeypatch.context() as m:
        _interrupt_at(m, pool_mod.ModelPool, "update", 5, how)  # during outer step 5
        with pytest.raises(Interrupted if how == "signal" else RuntimeError):
            api.distill(tiny_data, tiny_teacher, cfg, device=CPU, checkpointing=ckpt)
    assert ckpt.path.exists()
    ckpt.resume = True
    again = api.distill(tiny_data, tiny_teacher, cfg, device=CPU, checkpointing=ckpt)
    assert again.losses == full.losses
    assert sorted(again.tensors) == sorted(full.tensors)
    assert all(torch.equal(again.tensors[k], full.tensors[k]) for k in full.tensors)
    assert again.meta.fit["steps_done"] == 7 and again.meta.fit["drift"] == full.meta.fit["drift"]


@pytest.mark.parametrize("how", ["signal", "kill"])
def test_teacher_resume_is_bit_identical(how: str, tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from ssdd_cli import augment
    from ssdd_cli.config import teacher_config

    cfg = teacher_config("cpu", arch="convnet2_xs", num_steps=6, batch_size=16, warmup_steps=2, amp=False)
    full = api.make_teacher(tiny_data, cfg, device=CPU)
    every = 0 if how == "signal" else 2  # killed: only the checkpoint after step 2 survives
    ckpt = Checkpointing(tmp_path / "t.ckpt", every=every, identity=run_identity("teacher", cfg, tiny_data))
    with monkeypatch.context() as m:
        _interrupt_at(m, augment, "barlow_twins_view", 7, how)  # during step 4 (two views a step)
        if how == "signal":
            with pytest.raises(Interrupted, match="interrupted after step 4 of 6"):
                api.make_teacher(tiny_data, cfg, device=CPU, checkpointing=ckpt)
        else:
            with pytest.raises(RuntimeError, match="killed"):
                api.make_teacher(tiny_data, cfg, device=CPU, checkpointing=ckpt)
    ckpt.resume = True
    again = api.make_teacher(tiny_data, cfg, device=CPU, checkpointing=ckpt)
    a, b = full.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.meta["steps_done"] == 6 and again.meta["final_loss"] == full.meta["final_loss"]


def test_a_checkpoint_of_another_run_is_refused(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_distill_config("krr_st", num_steps=2)
    ckpt = Checkpointing(tmp_path / "b.ckpt", every=1, identity=run_identity("distill", cfg, tiny_data, tiny_teacher))
    api.distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=4), device=CPU,
                checkpointing=Checkpointing(ckpt.path, every=1, identity=ckpt.identity))
    other = tiny_distill_config("krr_st", num_steps=2, lr=0.5)
    ckpt_other = Checkpointing(ckpt.path, identity=run_identity("distill", other, tiny_data, tiny_teacher), resume=True)
    with pytest.raises(ConfigError, match="belongs to a run with other settings"):
        api.distill(tiny_data, tiny_teacher, other, device=CPU, checkpointing=ckpt_other)


def test_cli_resume_and_checkpoint_rules(tiny_teacher_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI: an interrupted distill leaves a checkpoint and no output; --resume finishes it and removes the checkpoint.

    A leftover checkpoint is never silently discarded: without --resume or --overwrite the run refuses to start.
    """
    from typer.testing import CliRunner

    from ssdd_cli.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["distill", "shapes", "--teacher", str(tiny_teacher_path), "--preset", "cpu", "--method", "krr-st",
            "--steps", "5", "--budget", "4", "--image-size", "16", "--batch-size", "16", "--set", "pool_arch=convnet2_xs",
            "--set", "pool_size=2", "--set", "pool_online_steps=2", "--device", "cpu", "-o", "k.safetensors"]
    with monkeypatch.context() as m:
        _interrupt_at(m, pool_mod.ModelPool, "update", 3, "signal")
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 130 and "--resume" in res.stderr.strip().splitlines()[-1]
    assert not Path("k.safetensors").exists() and Path("k.safetensors.ckpt").exists()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 7 and "checkpoint of an interrupted run" in res.stderr
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.stderr
    assert Path("k.safetensors").exists() and not Path("k.safetensors.ckpt").exists()
    res = CliRunner().invoke(app, [*args[:-1], "other.safetensors", "--resume"])
    assert res.exit_code == 2 and "no checkpoint at other.safetensors.ckpt" in res.stderr


def test_representation_cache_is_keyed_by_content(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two datasets with the same name and image count but different pixels never share a cache entry."""
    import dataclasses

    from ssdd_cli.api import teacher_representations

    first = dataclasses.replace(tiny_data, name="imgs")
    second = dataclasses.replace(tiny_data, name="imgs", train_images=tiny_data.train_images.flip(-1).contiguous())
    a = teacher_representations(tiny_teacher, first, cache=tmp_path)
    b = teacher_representations(tiny_teacher, second, cache=tmp_path)
    assert len(list((tmp_path / "reprs").iterdir())) == 2
    assert torch.equal(b, tiny_teacher.represent(second.train_images).cpu()) and not torch.equal(a, b)
    edited = dataclasses.replace(first, train_images=first.train_images.clone())
    edited.train_images[0] = 255 - edited.train_images[0]  # one image edited in place
    c = teacher_representations(tiny_teacher, edited, cache=tmp_path)
    assert not torch.equal(c[0], a[0]) and torch.equal(c[1:], a[1:])


def test_resume_with_a_teacher_cache_is_bit_identical(tiny_data, tiny_teacher, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The cached views' slot choices are part of the checkpoint too."""
    cfg = tiny_distill_config("boost", num_steps=6, pool_online_steps=2, teacher_cache=2)
    full = api.distill(tiny_data, tiny_teacher, cfg, device=CPU, cache=tmp_path)
    ckpt = Checkpointing(tmp_path / "b.ckpt", every=0, identity=run_identity("distill", cfg, tiny_data, tiny_teacher))
    with monkeypatch.context() as m:
        _interrupt_at(m, pool_mod.ModelPool, "update", 4, "signal")
        with pytest.raises(Interrupted):
            api.distill(tiny_data, tiny_teacher, cfg, device=CPU, cache=tmp_path, checkpointing=ckpt)
    ckpt.resume = True
    again = api.distill(tiny_data, tiny_teacher, cfg, device=CPU, cache=tmp_path, checkpointing=ckpt)
    assert again.losses == full.losses and all(torch.equal(again.tensors[k], full.tensors[k]) for k in full.tensors)
