"""The report of ``bench consume``: each figure as median (min–max) of the runs."""

from __future__ import annotations

from collections.abc import Sequence

from worker.bench.stats import Row, summarize


def print_consume_report(runs: Sequence[Sequence[Row]], params: Row) -> None:
    throughput = [[r for r in rows if r["mode"] == "throughput"] for rows in runs]
    latency = [[r for r in rows if r["mode"] == "latency"] for rows in runs]
    print(
        f"\nthroughput: {params['events']:,} queued events, one worker process each "
        f"(connector-fleet-2p: two) (max_in_flight={params['max_in_flight']} for every "
        f"process)"
    )
    print(f"{'system':>19} | {'events/s':>26} | connector-fleet / system (within each run)")
    for row in summarize(throughput, ("system",)):
        print(
            f"{row.key['system']:>19} | {row.cell('events_per_s'):>26} | "
            f"{row.cell('ours_vs', '.2f')}"
        )
    print(
        f"\nlatency, send to completion, at a steady offered rate for "
        f"{params['duration_s']:g} s; kept up = runs whose last event was done within "
        f"1 s of its send"
    )
    print(
        f"{'system':>19} | {'rate':>7} | {'achieved':>24} | {'p50 ms':>24} | "
        f"{'p99 ms':>24} | kept up"
    )
    for row in summarize(latency, ("rate", "system")):
        print(
            f"{row.key['system']:>19} | {row.key['rate']:>7,} | "
            f"{row.cell('achieved_rate'):>24} | {row.cell('p50_ms', ',.2f'):>24} | "
            f"{row.cell('p99_ms', ',.2f'):>24} | {row.cell('kept_up')}"
        )
