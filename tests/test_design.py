"""Structural promises of the package: a torch-free config, thin CLI commands, the CLI equal to the API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ssdd_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_config_is_torch_free() -> None:
    """Importing the config and building every config validates before torch loads (a typo fails in milliseconds)."""
    code = ("import sys, ssdd_cli.config as c; c.distill_config('krr-st', 'cpu', budget=10); c.teacher_config('cpu'); "
            "c.eval_config('cpu'); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_command_bodies_are_thin() -> None:
    """Every CLI command function body is at most 30 lines: parse, call one API function, render."""
    tree = ast.parse((ROOT / "ssdd_cli" / "cli.py").read_text())
    sizes = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command" for d in node.decorator_list):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # without the docstring
            sizes[node.name] = body[-1].end_lineno - body[0].lineno + 1
    assert {"teacher", "distill", "inspect", "expand", "evaluate"} <= set(sizes)
    assert {k: v for k, v in sizes.items() if v > 30} == {}


def test_cli_and_api_write_the_same_bundle(tiny_teacher_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same settings through ``ssdd distill`` and through ``api.distill_to_file`` give identical bundles."""
    from ssdd_cli import api
    from ssdd_cli.bundle import load_bundle

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["distill", "shapes", "--teacher", str(tiny_teacher_path), "--preset", "cpu",
                                   "--steps", "2", "--budget", "8", "--batch-size", "16", "--image-size", "16",
                                   "--set", "pool_arch=convnet2_xs", "--set", "pool_size=2", "--set",
                                   "pool_online_steps=2", "--set", "approx_steps=20", "--set", "image_fit_steps=5", "--device", "cpu",
                                   "-o", "cli.safetensors"])
    assert res.exit_code == 0, res.stderr
    api.distill_to_file("shapes", "api.safetensors", preset="cpu", teacher=tiny_teacher_path,
                        settings=dict(num_steps=2, budget=8, batch_size=16, pool_arch="convnet2_xs", pool_size=2,
                                      pool_online_steps=2, approx_steps=20, image_fit_steps=5),
                        data=api.DataOptions(image_size=16), device="cpu")
    a, b = load_bundle("cli.safetensors"), load_bundle("api.safetensors")
    assert sorted(a.tensors) == sorted(b.tensors) and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    timeless = {"created": "", "fit": {k: v for k, v in a.meta.fit.items() if k != "seconds"}}
    import dataclasses

    assert dataclasses.replace(a.meta, **timeless) == dataclasses.replace(
        b.meta, created="", fit={k: v for k, v in b.meta.fit.items() if k != "seconds"})


def test_set_and_config_file_reach_the_config(tiny_teacher_path: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A TOML file, then ``--set``, then flags: the recorded config shows each, the later winning."""
    from ssdd_cli.bundle import load_bundle

    monkeypatch.chdir(tmp_path)
    Path("run.toml").write_text('[distill]\npool_arch = "convnet2_xs"\npool_size = 2\npool_online_steps = 2\n'
                                'ridge = 0.001\nbatch_size = 8\n[evaluate]\narch = "convnet3"\n')
    res = CliRunner().invoke(app, ["distill", "shapes", "--teacher", str(tiny_teacher_path), "--preset", "cpu",
                                   "--method", "krr-st", "--steps", "1", "--budget", "4", "--image-size", "16",
                                   "--config", "run.toml", "--set", "ridge=0.01", "--set", "lr_targets=0.5",
                                   "--batch-size", "16", "--device", "cpu", "-o", "k.safetensors"])
    assert res.exit_code == 0, res.stderr
    config = load_bundle("k.safetensors").meta.config
    assert config["pool_arch"] == "convnet2_xs" and config["pool_size"] == 2  # file
    assert config["ridge"] == 0.01 and config["lr_targets"] == 0.5  # --set over the file
    assert config["batch_size"] == 16  # flag over the file


@pytest.mark.parametrize("args, text", [
    (["--set", "pool_sise=2"], "unknown distill setting 'pool_sise'; did you mean 'pool_size'?"),
    (["--set", "pool_size=two"], "setting 'pool_size' must be an integer, got 'two'"),
    (["--set", "ridge"], "--set takes KEY=VALUE"),
    (["--set", "lr=nan"], "lr must be a finite number"),
    (["--set", "approx_mode=sometimes"], "approx_mode must be after or joint"),
    (["--set", "sizing=most"], "sizing must be paper or images"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--preset", "gpu"], "unknown preset 'gpu'"),
    (["--config", "missing.toml"], "cannot read config file"),
])
def test_bad_settings_fail_before_any_work(args: list[str], text: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings errors: exit 2, one line, before the dataset or teacher are even looked at."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["distill", "no-such-dataset", "-o", "x.safetensors", *args])
    assert res.exit_code == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], res.stderr
    assert not Path("x.safetensors").exists()


def test_settings_docs_match_the_dataclasses() -> None:
    """docs/config.md is generated from the config dataclasses (``ssdd settings CMD --markdown``) and up to date."""
    from ssdd_cli.config import CONFIG_CLASSES, settings_markdown

    doc = (ROOT / "docs" / "config.md").read_text()
    for command in CONFIG_CLASSES:
        assert settings_markdown(command) in doc, f"docs/config.md is stale for {command}; regenerate it"
    res = CliRunner().invoke(app, ["settings", "evaluate"])
    assert res.exit_code == 0 and "probe_steps" in res.stdout


@pytest.mark.parametrize("command", ["teacher", "distill", "inspect", "expand", "evaluate", "settings", "doctor"])
def test_help_reads_at_80_columns(command: str) -> None:
    """``--help`` at 80 columns: every option name whole, no line wider than the terminal."""
    import typer.main

    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert res.exit_code == 0
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    click_command = typer.main.get_command(app).commands[command]
    for param in click_command.params:
        for name in param.opts + param.secondary_opts:
            if name.startswith("-"):
                assert name in res.stdout, f"{name} missing or cut in `ssdd {command} --help`"


def test_doctor(tmp_path: Path) -> None:
    """``ssdd doctor`` names the versions, the devices and the cache with its size."""
    (tmp_path / "tensors").mkdir()
    (tmp_path / "tensors" / "x.safetensors").write_bytes(b"0" * 2_000_000)
    res = CliRunner().invoke(app, ["doctor", "--cache-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.stderr
    import json

    report = json.loads(res.stdout)
    assert report["torch"] == torch.__version__ and report["cache"] == str(tmp_path)
    assert report["cache_files"] == 1 and report["cache_mb"] == 2.0
