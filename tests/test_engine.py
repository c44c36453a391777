"""The one training loop: divergence errors, no host reads when asked, time estimates, resumed progress."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli import engine
from ssdd_cli.errors import NumericalError
from ssdd_cli.reporting import NullReporter


class Notes(NullReporter):
    """A reporter that keeps the notes it is given."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:  # noqa: D102
        self.notes.append(message)


def _problem(lr: float = 0.1):  # type: ignore[no-untyped-def]
    w = torch.nn.Parameter(torch.tensor([3.0]))
    return w, torch.optim.SGD([w], lr=lr)


def test_divergence_is_a_one_line_error_with_the_hint() -> None:
    w, opt = _problem(lr=10.0)
    with pytest.raises(NumericalError, match=r"the loss became (inf|nan) at step \d+; lower it"):
        engine.fit(lambda _: (w ** 8).sum(), opt, 50, log_every=1, hint="lower it")


def test_log_every_zero_never_reads_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner steps can run without a single host read: no loss recorded, no check."""
    w, opt = _problem()
    res = engine.fit(lambda _: (w ** 2).sum(), opt, 5, log_every=0)
    assert res.steps == 5 and res.losses == []
    w2, opt2 = _problem()
    res2 = engine.fit(lambda _: (w2 ** 2).sum(), opt2, 5, log_every=2)
    assert len(res2.losses) == 4 and torch.equal(w, w2)  # steps 1, 2, 4, 5; same updates either way


def test_time_estimate_for_long_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first steps, a run whose rest would exceed ETA_NOTE_S says how long it will take."""
    monkeypatch.setattr(engine, "ETA_NOTE_S", 0.0)
    monkeypatch.setattr(engine, "ETA_AFTER_STEPS", 3)
    w, opt = _problem()
    notes = Notes()
    engine.fit(lambda _: (w ** 2).sum(), opt, 10, reporter=notes, name="demo")
    assert len(notes.notes) == 1 and notes.notes[0].startswith("demo: about ") and "left for 7 steps" in notes.notes[0]
    monkeypatch.setattr(engine, "ETA_NOTE_S", 1e9)
    quiet = Notes()
    engine.fit(lambda _: (w ** 2).sum(), opt, 10, reporter=quiet)
    assert quiet.notes == []


def test_start_continues_the_count_and_history() -> None:
    w, opt = _problem()
    first = engine.fit(lambda _: (w ** 2).sum(), opt, 4, log_every=1)
    res = engine.fit(lambda _: (w ** 2).sum(), opt, 6, log_every=1, start=first)
    assert res.steps == 6 and len(res.losses) == 6 and res.losses[:4] == first.losses
