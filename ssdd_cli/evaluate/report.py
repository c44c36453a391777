"""The evaluation report: per-seed accuracies of every (set, architecture, target, protocol), paired.

Rows are the sets being compared (distilled bundles, baselines, the no-pretraining floor and the
teacher's own features); a *table* is one (architecture, target, protocol). Seed ``s`` gives every
row the same model initialisation and probe order, so differences between rows are taken per seed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

#: row kinds, in the order tables list them
ROW_KINDS = ("bundle", "baseline", "full", "floor", "teacher")


@dataclass
class EvalRow:
    """One set compared in the report."""

    name: str
    kind: str  # one of ROW_KINDS
    note: str = ""


@dataclass
class EvalResult:
    """Accuracies (%) of one row in one table, one per seed (the teacher row: one value)."""

    row: str
    arch: str
    target: str
    protocol: str
    accuracies: list[float]

    @property
    def mean(self) -> float:
        """Mean accuracy."""
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for one value)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class EvalReport:
    """Everything ``ssdd evaluate`` measured, with the protocol it ran."""

    rows: list[EvalRow] = field(default_factory=list)
    results: list[EvalResult] = field(default_factory=list)
    archs: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def result(self, row: str, arch: str, target: str, protocol: str) -> EvalResult | None:
        """The cell of ``row`` in one table (``None`` when that row was not run there)."""
        return next((r for r in self.results if (r.row, r.arch, r.target, r.protocol) == (row, arch, target, protocol)),
                    None)

    def tables(self) -> list[tuple[str, str, str]]:
        """Every ``(arch, target, protocol)`` that has results, in the order of targets, protocols, archs."""
        present = {(r.arch, r.target, r.protocol) for r in self.results}
        return [(a, t, p) for t in self.targets for p in self.protocols for a in self.archs if (a, t, p) in present]

    @property
    def reference(self) -> EvalRow | None:
        """The row others are compared with: the random baseline when present, else the floor."""
        for kind, prefix in (("baseline", "random"), ("floor", "")):
            for row in self.rows:
                if row.kind == kind and row.name.startswith(prefix):
                    return row
        return None

    def improvement(self, row: str, arch: str, target: str, protocol: str) -> list[float] | None:
        """Per-seed difference of ``row`` over the reference row in one table (``None``: not comparable)."""
        ref = self.reference
        mine = self.result(row, arch, target, protocol)
        if ref is None or ref.name == row or mine is None or any(r.name == row and r.kind == "teacher" for r in self.rows):
            return None
        other = self.result(ref.name, arch, target, protocol)
        if other is None or len(other.accuracies) != len(mine.accuracies):
            return None
        return [a - b for a, b in zip(mine.accuracies, other.accuracies, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report: one entry per table, each row with its per-seed accuracies and improvement."""
        ref = self.reference
        tables = []
        for arch, target, protocol in self.tables():
            rows = []
            for row in self.rows:
                res = self.result(row.name, arch, target, protocol)
                if res is None:
                    continue
                entry: dict[str, Any] = {"name": row.name, "kind": row.kind, "mean": round(res.mean, 3),
                                         "std": round(res.std, 3), "accuracies": [round(a, 3) for a in res.accuracies],
                                         "note": row.note}
                diff = self.improvement(row.name, arch, target, protocol)
                if diff is not None:
                    m, s = mean_std(diff)
                    entry["improvement"] = {"over": ref.name if ref else None, "mean": round(m, 3), "std": round(s, 3),
                                            "per_seed": [round(d, 3) for d in diff]}
                rows.append(entry)
            tables.append({"arch": arch, "target": target, "protocol": protocol, "rows": rows})
        return {"tables": tables, "rows": [{"name": r.name, "kind": r.kind, "note": r.note} for r in self.rows],
                "archs": self.archs, "targets": self.targets, "protocols": self.protocols, "seeds": self.seeds,
                "reference": ref.name if ref else None, "config": self.config, "seconds": round(self.seconds, 1)}

    def to_markdown(self) -> str:
        """The tables as Markdown: a set × architecture matrix per (target, protocol), then paired differences."""
        ref = self.reference
        lines = ["# ssdd evaluation", ""]
        tables = set(self.tables())
        lines.append(f"Seeds {', '.join(map(str, self.seeds))} (paired across rows); top-1 % as mean ± std over seeds. "
                     f"Pretraining {self.config.get('pretrain_epochs')} epochs; protocol settings in report.json.")
        for target in self.targets:
            for protocol in self.protocols:
                archs = [a for a in self.archs if (a, target, protocol) in tables]
                if not archs:
                    continue
                lines += ["", f"## {target}, {protocol}", "", "| set | " + " | ".join(archs) + " |",
                          "|---|" + "---|" * len(archs)]
                for row in self.rows:
                    cells = []
                    for arch in archs:
                        res = self.result(row.name, arch, target, protocol)
                        cells.append("" if res is None else (f"{res.mean:.2f} ± {res.std:.2f}" if len(res.accuracies) > 1
                                                             else f"{res.mean:.2f}"))
                    if any(cells):
                        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
                if ref is not None:
                    diffs = []
                    for row in self.rows:
                        cells = []
                        for arch in archs:
                            d = self.improvement(row.name, arch, target, protocol)
                            cells.append("" if d is None else "{:+.2f} ± {:.2f}".format(*mean_std(d)))
                        if any(cells):
                            diffs.append(f"| {row.name} − {ref.name} | " + " | ".join(cells) + " |")
                    if diffs:
                        lines += ["", "| paired difference | " + " | ".join(archs) + " |", "|---|" + "---|" * len(archs)]
                        lines += diffs
        notes = [f"* {r.name}: {r.note}" for r in self.rows if r.note]
        if notes:
            lines += ["", "Rows:", "", *notes]
        return "\n".join(lines) + "\n"
