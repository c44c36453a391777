"""Every module imports on its own in a fresh interpreter (no import-order-dependent cycles)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "ssdd_cli.teacher", "ssdd_cli.methods.distill", "ssdd_cli.methods.synthetic", "ssdd_cli.methods.pool",
    "ssdd_cli.config", "ssdd_cli.bundle", "ssdd_cli.storage", "ssdd_cli.expand", "ssdd_cli.evaluate",
    "ssdd_cli.models", "ssdd_cli.augment", "ssdd_cli.api", "ssdd_cli.cli", "ssdd_cli.distributed",
]

SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for mod in [m for m in sys.modules if m == "ssdd_cli" or m.startswith("ssdd_cli.")]:
        del sys.modules[mod]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
import ssdd_cli
assert callable(ssdd_cli.distill) and callable(ssdd_cli.load_bundle)  # lazy API attributes still work
"""


def test_each_module_imports_first() -> None:
    """Importing any module first (as a library user would) works; lazy package attributes still resolve."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *MODULES], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


def test_cli_module_does_not_import_torch() -> None:
    # `ssdd --help` and argument errors stay instant: torch loads only when a command runs.
    code = "import sys, ssdd_cli.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
