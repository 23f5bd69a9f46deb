"""``connector-fleet bench sources``: items/s of the device and system sources, each
against a bare client loop doing the same reads plus XADD (``ratio`` = source /
bare loop). Each source's run lives in its own module (``SOURCES``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, summarize

# Each source's module, whose ``measure(params)`` makes its rows of one run.
SOURCES = {"modbus": "worker.bench.sources_modbus"}
_KEY_FIELDS = ("source", "mode")
_UNITS = {"modbus": "registers/s"}


def measure(params: Row) -> list[Row]:
    rows: list[Row] = []
    for source in params["sources"]:
        run: Callable[[Row], list[Row]] = importlib.import_module(SOURCES[source]).measure
        rows += run(params)
    return rows


def run_sources_bench(params: Row, runs: int) -> int:
    unknown = [s for s in params["sources"] if s not in SOURCES]
    if unknown:
        raise ValueError(f"bench sources: unknown source(s) {', '.join(unknown)} "
                         f"(known: {', '.join(SOURCES)})")
    repeated = repeat_in_fresh_processes("sources", params, runs, timeout_s=1800)
    print(repeated.describe())
    print_sources_report(summarize(repeated.runs, _KEY_FIELDS))
    return 0


def print_sources_report(rows: list[SummaryRow]) -> None:
    print("items/s through the connector (fenced commit) and through a bare client loop "
          "(same reads + XADD); ratio = connector / bare loop")
    print(f"{'source':>8} | {'mode':>10} | {'unit':>12} | {'connector':>24} | "
          f"{'bare loop':>24} | {'ratio':>17}")
    for row in rows:
        source = str(row.key["source"])
        print(f"{source:>8} | {row.key['mode']!s:>10} | {_UNITS.get(source, 'items/s'):>12} | "
              f"{row.cell('rate'):>24} | {row.cell('bare_rate'):>24} | "
              f"{row.cell('ratio', '.2f'):>17}")
