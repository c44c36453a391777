"""CLI test helpers shared by the test modules: run ``ssdd``, and assert success or a one-line failure."""

from __future__ import annotations

from typer.testing import CliRunner

from ssdd_cli.cli import app


def invoke(*args: str):  # type: ignore[no-untyped-def]
    """Run ``ssdd ARGS`` (stdout and stderr are captured separately by this typer's CliRunner)."""
    return CliRunner().invoke(app, list(args))


def ok(result) -> None:  # type: ignore[no-untyped-def]
    """Exit 0 (with both streams in the failure message)."""
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"


def fails(result, code: int, text: str) -> str:  # type: ignore[no-untyped-def]
    """Exit ``code``, exactly one ``error:`` line on stderr (the last one) containing ``text``, no traceback."""
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert text in errors[0], errors[0]
    assert "Traceback" not in result.output and "error:" not in result.stdout
    return errors[0]
