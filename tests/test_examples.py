"""The example scripts run at toy size (so they cannot rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_python_api_example(tmp_path: Path) -> None:
    """examples/python_api.py runs end to end; its accuracy is the probe of the bundle it wrote.

    The returned accuracy is a whole number of correct test images, above chance, and re-evaluating the
    saved bundle with the example's evaluation settings and seed gives exactly the same number.
    """
    import torch

    from ssdd_cli import api

    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLES / "python_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(steps=2, out=str(tmp_path / "out"), image_size=16)
    path = tmp_path / "out" / "set.safetensors"
    assert path.exists()
    data = api.load_dataset("shapes", image_size=16)
    num_test = data.test_images.shape[0]
    num_classes = int(data.test_labels.max()) + 1
    correct = acc * num_test / 100
    assert abs(correct - round(correct)) < 1e-6, acc  # a whole number of correctly classified test images
    assert acc > 100 / num_classes, acc  # better than chance
    summary = api.inspect_bundle(path, verify=True)
    assert summary["method"] == "boost" and summary["storage"]["cost"] <= 20 and all(summary["verify"].values())
    dev = api.resolve_device("auto")
    images, targets = api.expand_pairs(api.load_bundle(path), device=dev)
    ecfg = api.eval_config("cpu", pretrain_epochs=20, probe_steps=200)
    again = api.evaluate_pairs(images, targets, data, ecfg, seed=0, device=dev)
    assert again == acc if dev.type == "cpu" else abs(again - acc) <= 2.0  # CUDA kernels may be nondeterministic
    assert torch.isfinite(targets).all()


def test_demo_script_uses_existing_flags() -> None:
    """Every `ssdd` flag used by examples/demo.sh exists in the CLI (the demo itself runs in `make demo`)."""
    import re

    from typer.testing import CliRunner

    from ssdd_cli.cli import app

    text = (EXAMPLES / "demo.sh").read_text().replace("\\\n", " ")
    runner = CliRunner()
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("ssdd "):
            continue
        command = line.split()[1]
        help_text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
        for flag in re.findall(r"(--[a-z][a-z-]*)", line):
            assert flag in help_text, f"{command} has no {flag}"
