"""``connector-fleet bench sources``: how fast each source moves its peer's data into
the stream through the connector (the push connector's fenced append with the
positions, or the poller's diff and commit), against a bare client loop of the same
library doing the same reads plus XADD on the same Redis. Goal: at least 0.5x the
bare loop.

Each source is a module (:data:`SOURCES`) whose ``measure(params) -> list[Row]``
gives, for one run, a row per mode with ``rate`` and ``bare_rate`` (its unit in
:data:`UNITS`): it starts its own peer, loads it, and times both loops. Each run is a
fresh process (``worker.bench.repeat``); the report gives the median and range of the
runs, and the load average at the start of each.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from typing import Any

from framework.testing import RedisServer
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, summarize
from worker.exit_codes import ExitCode

# Source name -> the module measuring it (one line per source).
SOURCES = {
    "kafka": "worker.bench.source_kafka",
    "modbus": "worker.bench.sources_modbus",
    "mqtt": "worker.bench.source_mqtt",
    "amqp": "worker.bench.source_amqp",
    "imap": "worker.bench.source_imap",
    "fs": "worker.bench.source_fs",
    "cron": "worker.bench.source_cron",
    "cdc": "worker.bench.source_cdc",
    "opcua": "worker.bench.source_opcua",
}
UNITS = {"kafka": "events/s", "modbus": "registers/s", "mqtt": "events/s", "amqp": "events/s",
         "imap": "mails/s", "fs": "events/s", "cron": "late ms", "cdc": "rows/s",
         "opcua": "notifications/s"}
_KEY_FIELDS = ("source", "mode")
GOAL_RATIO = 0.5


def measure(params: Row) -> list[Row]:
    """One run (in the process ``worker.bench.once`` started): the rows of each source."""
    rows: list[Row] = []
    with ExitStack() as stack:
        url = params["redis_url"] or stack.enter_context(RedisServer()).url
        for name in params["sources"]:
            measure_source: Callable[[Row], list[Row]] = importlib.import_module(
                SOURCES[name]).measure
            for row in measure_source({**params, "redis_url": url}):
                # A row may give its own ratio: None where higher is not better (lateness).
                ratio = row["ratio"] if "ratio" in row else row["rate"] / row["bare_rate"]
                rows.append({**row, "source": name, "ratio": ratio})
    return rows


def drain_rows(params: Row, drain: Callable[[int, str], Coroutine[Any, Any, Row]]) -> list[Row]:
    """A broker source's one row: ``drain(events, redis_url)`` gives both loops' rates
    (``rate``, ``bare_rate``) over ``params["events"]`` messages."""
    events = int(params["events"])
    rates = asyncio.run(drain(events, params["redis_url"]))
    return [{"mode": "drain", "events": events, **rates}]


def run_sources_bench(params: Row, runs: int) -> int:
    unknown = sorted(set(params["sources"]) - set(SOURCES))
    if unknown:
        print(f"bench sources: unknown source(s) {', '.join(unknown)} "
              f"(known: {', '.join(SOURCES)})", file=sys.stderr)
        return int(ExitCode.USAGE)
    repeated = repeat_in_fresh_processes("sources", params, runs, timeout_s=1800)
    print(repeated.describe())
    print_sources_report(summarize(repeated.runs, _KEY_FIELDS))
    return 0


def print_sources_report(rows: list[SummaryRow]) -> None:
    print("through the connector, and through a bare client loop of the same library "
          f"(same reads + XADD); goal: ratio >= {GOAL_RATIO}")
    print(f"{'source':>8} | {'mode':>10} | {'unit':>12} | {'connector':>24} | "
          f"{'bare loop':>24} | {'ratio':>17}")
    for row in rows:
        source = str(row.key["source"])
        print(f"{source:>8} | {row.key['mode']!s:>10} | {UNITS.get(source, 'items/s'):>12} | "
              f"{row.cell('rate'):>24} | {row.cell('bare_rate'):>24} | "
              f"{row.cell('ratio', '.2f'):>17}")
    for row in rows:  # sources that measure their end-to-end lag too (cdc)
        if "lag_p99_ms" in row.spreads:
            print(f"{row.key['source']!s:>8} | {row.key['mode']!s:>10} | lag p99 ms: "
                  f"connector {row.cell('lag_p99_ms')}, bare loop {row.cell('bare_lag_p99_ms')}")
