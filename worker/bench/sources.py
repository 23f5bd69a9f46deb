"""``connector-fleet bench sources``: events/s from a push source's peer into the
stream, through the connector (receive, make events, one fenced append per batch
with the positions), against a bare client loop of the same library doing consume
-> pipelined XADD on the same Redis. Goal: at least 0.5x the bare loop.

Each source is a module (:data:`SOURCES`) with ``measure(events, redis_url) -> Row``
giving ``connector_rate`` and ``bare_rate`` (events/s) for one run: it starts its own
peer, loads it with ``events`` messages, and times both loops draining them.
Each run is a fresh process (``worker.bench.repeat``); the report gives the median
and range of the runs, and the load average at the start of each.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from contextlib import ExitStack

from framework.testing import RedisServer
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, summarize
from worker.exit_codes import ExitCode

# Source name -> the module measuring it (one line per source).
SOURCES = {
    "kafka": "worker.bench.source_kafka",
}
_KEY_FIELDS = ("source", "events")
GOAL_RATIO = 0.5


def measure(params: Row) -> list[Row]:
    """One run (in the process ``worker.bench.once`` started): a row per source."""
    events, url = int(params["events"]), params["redis_url"]
    with ExitStack() as stack:
        if url is None:
            url = stack.enter_context(RedisServer()).url
        return [_measure_source(name, events, url) for name in params["sources"]]


def _measure_source(name: str, events: int, redis_url: str) -> Row:
    module = importlib.import_module(SOURCES[name])
    measure_one: Callable[[int, str], Row] = module.measure
    row = {"source": name, "events": events, **measure_one(events, redis_url)}
    row["ratio"] = row["connector_rate"] / row["bare_rate"]
    return row


def run_sources_bench(sources: list[str], events: int, redis_url: str | None, runs: int
                      ) -> int:
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        print(f"bench sources: unknown source(s) {', '.join(unknown)} "
              f"(known: {', '.join(SOURCES)})", file=sys.stderr)
        return int(ExitCode.USAGE)
    params = {"sources": sources, "events": events, "redis_url": redis_url}
    repeated = repeat_in_fresh_processes("sources", params, runs, timeout_s=1800)
    print(repeated.describe())
    print_sources_report(summarize(repeated.runs, _KEY_FIELDS))
    return 0


def print_sources_report(rows: list[SummaryRow]) -> None:
    print("events/s from the peer into the stream: the connector, and a bare client loop of "
          f"the same library (consume -> pipelined XADD); goal: ratio >= {GOAL_RATIO}")
    print(f"{'source':>8} | {'events':>8} | {'connector ev/s':>24} | {'bare loop ev/s':>24} | "
          f"{'ratio':>17}")
    for row in rows:
        print(f"{row.key['source']:>8} | {row.key['events']:>8,} | "
              f"{row.cell('connector_rate'):>24} | {row.cell('bare_rate'):>24} | "
              f"{row.cell('ratio', '.2f'):>17}")
