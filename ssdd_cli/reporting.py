"""Progress reporting: a protocol the library talks to, with a silent default and a rich one."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol


class ProgressReporter(Protocol):
    """Receives progress from long-running library functions."""

    def start(self, name: str, total: int | None) -> None:
        """Begin a task of ``total`` units (``None`` when unknown)."""

    def advance(self, n: int = 1, **metrics: float) -> None:
        """Advance the current task by ``n`` units and show the latest metrics."""

    def stop(self) -> None:
        """End the current task."""

    def note(self, message: str) -> None:
        """Say one line to the person running the work (what is about to happen, a hint)."""


class NullReporter:
    """Reporter that does nothing (the library default: notebooks and tests stay quiet)."""

    def start(self, name: str, total: int | None) -> None:  # noqa: D102
        pass

    def advance(self, n: int = 1, **metrics: float) -> None:  # noqa: D102
        pass

    def stop(self) -> None:  # noqa: D102
        pass

    def note(self, message: str) -> None:  # noqa: D102
        pass


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.3e}"


class RichReporter:
    """Transient rich progress bars on stderr, with the latest metrics in the description."""

    def __init__(self, console: Any | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._progress: Any = None
        self._task: Any = None
        self._name = ""
        self._total: int | None = None
        self._done = 0
        self._t0 = self._last_line = time.perf_counter()

    def start(self, name: str, total: int | None) -> None:  # noqa: D102
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.stop()
        self._name = name
        self._total = total
        self._done = 0
        self._t0 = time.perf_counter()
        self._last_line = self._t0
        if not self.console.is_terminal:
            # Logs and CI: no live bar, but a plain line every 30 s so long runs show progress.
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=total, rate="")

    def advance(self, n: int = 1, **metrics: float) -> None:  # noqa: D102
        self._done += n
        desc = self._name
        if metrics:
            desc += " " + " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
        if self._progress is None:
            now = time.perf_counter()
            if self._name and now - self._last_line >= 30:
                self._last_line = now
                total = f"/{self._total}" if self._total else ""
                rate = self._done / max(now - self._t0, 1e-9)
                self.console.print(f"{desc} [{self._done}{total}, {rate:.2f}/s, {now - self._t0:.0f} s]", highlight=False)
            return
        self._progress.update(self._task, advance=n, description=desc)
        task = self._progress.tasks[0]
        speed = task.speed
        if speed:
            self._progress.update(self._task, rate=f"{speed:.2f}/s")

    def stop(self) -> None:  # noqa: D102
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, message: str) -> None:  # noqa: D102
        self.console.print(message, highlight=False, soft_wrap=True, markup=False)


def setup_logging(verbosity: int, console: Any | None = None) -> None:
    """Route library logging to a rich handler on stderr (``-1`` quiet, ``0`` info, ``1`` debug)."""
    from rich.console import Console
    from rich.logging import RichHandler

    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = RichHandler(
        console=console or Console(stderr=True), show_path=False, show_time=False, markup=False
    )
    root = logging.getLogger("ssdd_cli")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
