"""The example scripts run at toy size (so they cannot rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_python_api_example(tmp_path: Path) -> None:
    """examples/python_api.py runs end to end and gives a probe accuracy in [0, 100]."""
    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLES / "python_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(steps=2, out=str(tmp_path / "out"), image_size=16)
    assert 0.0 <= acc <= 100.0
    assert (tmp_path / "out" / "set.safetensors").exists()


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
