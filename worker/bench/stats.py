"""What every benchmark reports: each figure as the median of its runs with their range.

A benchmark's run yields rows (a row: the fields naming it, such as the system and
the rate, and its numeric figures). ``summarize`` matches the rows of all runs by
their naming fields and gives each figure its :class:`Spread`; a yes/no figure
(``kept_up``) becomes how many runs said yes. A best run alone is never shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Spread:
    """Minimum, median and maximum of one figure over the runs."""

    low: float
    median: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float], name: str = "figure") -> Spread:
        if not values:
            raise ValueError(f"no value of {name} to summarize: every run failed to give it")
        return cls(min(values), statistics.median(values), max(values), len(values))

    def scaled(self, factor: float) -> Spread:
        """The same spread in another unit (``scaled(1000)``: seconds to milliseconds)."""
        return Spread(self.low * factor, self.median * factor, self.high * factor, self.runs)

    def format(self, spec: str = ",.0f") -> str:
        """``median (min–max)``, e.g. ``10,582 (9,300–10,676)``; one run: the value."""
        median = format(self.median, spec)
        if self.runs == 1:
            return median
        return f"{median} ({format(self.low, spec)}–{format(self.high, spec)})"


@dataclass(frozen=True)
class Count:
    """How many of the runs a yes/no figure held in."""

    yes: int
    runs: int

    def format(self) -> str:
        return f"{self.yes}/{self.runs}"


@dataclass
class SummaryRow:
    """One row across the runs: its naming fields, a Spread per number, a Count per flag."""

    key: Row
    spreads: dict[str, Spread] = field(default_factory=dict)
    counts: dict[str, Count] = field(default_factory=dict)

    def cell(self, name: str, spec: str = ",.0f", factor: float = 1.0) -> str:
        """The figure ``name`` as text (``factor`` converts its unit); ``-`` if no run gave it."""
        if name in self.counts:
            return self.counts[name].format()
        spread = self.spreads.get(name)
        return "-" if spread is None else spread.scaled(factor).format(spec)


def summarize(runs: Sequence[Sequence[Row]], key_fields: Sequence[str]) -> list[SummaryRow]:
    """The rows of every run matched by ``key_fields``, in the order they first appear."""
    grouped: dict[tuple[Any, ...], list[Row]] = {}
    for rows in runs:
        for row in rows:
            grouped.setdefault(tuple(row.get(name) for name in key_fields), []).append(row)
    return [_summarize_group(key_fields, rows) for rows in grouped.values()]


def _summarize_group(key_fields: Sequence[str], rows: list[Row]) -> SummaryRow:
    summary = SummaryRow(key={name: rows[0].get(name) for name in key_fields})
    figures = [name for name in rows[0] if name not in key_fields]
    for name in figures:
        values = [row[name] for row in rows if row.get(name) is not None]
        if values and all(isinstance(value, bool) for value in values):
            summary.counts[name] = Count(sum(values), len(values))
        elif values and all(isinstance(value, int | float) for value in values):
            summary.spreads[name] = Spread.of(values, name)
    return summary


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of one run's samples (linear between the closest ranks);
    ValueError when there are none."""
    if not values:
        raise ValueError("no samples for a percentile")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[math.ceil(q) - 1]
