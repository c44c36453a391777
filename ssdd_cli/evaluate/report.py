"""The evaluation table: rows of per-seed accuracies and their paired differences."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvalRow:
    """Accuracies (%) of one row of an evaluation table, one per seed."""

    name: str
    accuracies: list[float]
    note: str = ""

    @property
    def mean(self) -> float:
        """Mean accuracy."""
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for one seed)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


@dataclass
class EvalReport:
    """Result of an evaluation: rows (distilled set, baselines, floor, teacher) and the protocol."""

    target: str
    arch: str
    rows: list[EvalRow] = field(default_factory=list)
    paired: dict[str, list[float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def pair_with_first(self, num_seeds: int, skip: tuple[str, ...] = ("teacher",)) -> None:
        """Per-seed differences of the first row against every later row with a value per seed."""
        if not self.rows or len(self.rows[0].accuracies) != num_seeds:
            return
        first = self.rows[0]
        for row in self.rows[1:]:
            if len(row.accuracies) == num_seeds and not row.name.startswith(skip):
                self.paired[f"{first.name} - {row.name}"] = [a - b for a, b in zip(first.accuracies, row.accuracies,
                                                                                     strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "target": self.target,
            "arch": self.arch,
            "rows": [{"name": r.name, "mean": round(r.mean, 3), "std": round(r.std, 3),
                      "accuracies": [round(a, 3) for a in r.accuracies], "note": r.note} for r in self.rows],
            "paired_differences": {k: [round(v, 3) for v in vals] for k, vals in self.paired.items()},
            "config": self.config,
            "seconds": round(self.seconds, 1),
        }
