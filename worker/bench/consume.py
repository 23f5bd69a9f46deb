"""``connector-fleet bench consume``: one consumer process running one rule with one
no-op capability (and two such processes in one group, ``connector-fleet-2p``), against
a raw loop (the limit) and against peers doing the same no-op work: Celery, arq,
FastStream's Redis Streams subscriber and taskiq-redis; and the same consumer calling
network capabilities (``email_send`` against an SMTP server, ``slack_message`` against a
Slack double: ``worker.bench.consume_actions``; ``kafka_publish``).

The work is nothing, for every system. For connector-fleet it runs behind the
whole path (``worker.bench.consume_worker``): event validation, rule match,
parameter templating, the step's execution record and the XACK; an event counts
as completed when it is acknowledged. The limit (``worker.bench.limit``) is a raw
XREADGROUP + batched XACK loop. The peers (``worker.bench.peers``) count
completion at the end of their task body. Each system gets the same concurrency
(``--max-in-flight``: arq's ``max_jobs``, Celery's prefetch, FastStream's
``max_workers``, taskiq's ``--max-async-tasks``).

Throughput: N events queued, then the worker starts; rate = completions per
second between the first and the last completion. Latency: after a warm-up of
1,000 events at the same rate, a producer that can reach the rate (pipelined or
concurrent sends) sends for a while; latency = completion minus send, and whether
the worker kept up (``worker.bench.load``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import redis as sync_redis

from framework.testing import RedisServer
from worker.bench.consume_actions import ACTION_PEERS
from worker.bench.consume_report import print_consume_report
from worker.bench.load import (
    DONE_KEY,
    WARM_UP_EVENTS,
    latency_row,
    queue_events,
    read_done,
    send_paced,
    throughput_row,
    wait_for_done,
)
from worker.bench.peers import PEERS, REPO_ROOT, run_peer
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row

# The systems run by this virtualenv's Python: their worker module and how many
# processes of it share the group (connector-fleet-2p: what `consume --processes 2` runs,
# two consumers of one group, each with its own max_in_flight).
LOCAL_SYSTEMS = {
    "connector-fleet": ("worker.bench.consume_worker", 1),
    "connector-fleet-2p": ("worker.bench.consume_worker", 2),
    "limit": ("worker.bench.limit", 1),
    # Rows per network capability: the connector-fleet worker calling it for real.
    **dict.fromkeys(ACTION_PEERS, ("worker.bench.consume_actions", 1)),
    "kafka_publish": ("worker.bench.consume_kafka", 1),
}
SYSTEMS = (*LOCAL_SYSTEMS, *PEERS)
DONE_TIMEOUT_S = 600.0
# A network capability does one real delivery per event (an SMTP session, an HTTP
# request): its throughput run is capped at this many events, and it has no
# latency run (it cannot keep up with the latency runs' rates).
ACTION_EVENTS = 3_000


def _start_worker(system: str, url: str, max_in_flight: int) -> list[subprocess.Popen[bytes]]:
    module, processes = LOCAL_SYSTEMS[system]
    return [
        subprocess.Popen(
            [sys.executable, "-m", module, url, str(max_in_flight),
             # consume_actions takes the capability; the no-op worker its consumer name.
             system if system in ACTION_PEERS else f"bench-{index}"],
            cwd=REPO_ROOT,
        )
        for index in range(1, processes + 1)
    ]


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _wait_for_done(client: sync_redis.Redis, expected: int) -> None:
    wait_for_done(client, expected, DONE_TIMEOUT_S)


def _local_throughput(system: str, url: str, events: int, max_in_flight: int) -> Row:
    client = sync_redis.Redis.from_url(url)
    client.flushall()
    queue_events(client, events)
    worker = _start_worker(system, url, max_in_flight)
    try:
        _wait_for_done(client, events)
    finally:
        _stop(worker)
    return throughput_row(system, read_done(client))


def _local_latency(system: str, url: str, rate: int, duration_s: float, max_in_flight: int) -> Row:
    client = sync_redis.Redis.from_url(url)
    client.flushall()
    worker = _start_worker(system, url, max_in_flight)
    try:
        warm_up_s = WARM_UP_EVENTS / rate
        send_paced(client, rate, warm_up_s)
        _wait_for_done(client, int(rate * warm_up_s))  # the worker is consuming
        client.delete(DONE_KEY)
        achieved = send_paced(client, rate, duration_s)
        _wait_for_done(client, int(rate * duration_s))
    finally:
        _stop(worker)
    return latency_row(system, rate, achieved, read_done(client))


def _throughput(system: str, url: str, events: int, max_in_flight: int) -> Row | None:
    if system in LOCAL_SYSTEMS:
        return _local_throughput(system, url, events, max_in_flight)
    if (
        run_peer(
            PEERS[system],
            url,
            [
                "--mode",
                "throughput",
                "--events",
                str(events),
                "--max-in-flight",
                str(max_in_flight),
            ],
        )
        is None
    ):
        return None
    return throughput_row(system, read_done(sync_redis.Redis.from_url(url)))


def _latency(system: str, url: str, rate: int, duration_s: float, max_in_flight: int) -> Row | None:
    if system in LOCAL_SYSTEMS:
        return _local_latency(system, url, rate, duration_s, max_in_flight)
    result = run_peer(
        PEERS[system],
        url,
        [
            "--mode",
            "latency",
            "--rate",
            str(rate),
            "--duration-s",
            str(duration_s),
            "--max-in-flight",
            str(max_in_flight),
        ],
    )
    if result is None:
        return None
    records = read_done(sync_redis.Redis.from_url(url))
    return latency_row(system, rate, float(result["achieved_rate"]), records)


def _measure_at(url: str, params: Row) -> list[Row]:
    systems, mif = params["systems"], params["max_in_flight"]
    rows: list[Row] = []
    for system in systems:
        events = min(params["events"], ACTION_EVENTS) if system in ACTION_PEERS \
            else params["events"]
        if (row := _throughput(system, url, events, mif)) is not None:
            rows.append({"mode": "throughput", **row})
    ours = next((r["events_per_s"] for r in rows if r["system"] == "connector-fleet"), None)
    for row in rows:  # the ratio within the run: the machine is the same for both
        row["ours_vs"] = None if ours is None else ours / row["events_per_s"]
    for rate in params["rates"]:
        for system in (s for s in systems if s not in ACTION_PEERS):
            row = _latency(system, url, rate, params["duration_s"], mif)
            if row is not None:
                rows.append({"mode": "latency", **row})
    return rows


def measure(params: Row) -> list[Row]:
    """One run (in the process ``worker.bench.once`` started): every system, its rows."""
    with _redis(params["redis_url"]) as url:
        return _measure_at(url, params)


def run_consume_bench(params: Row, runs: int) -> int:
    """``params``: events, rates, duration_s, max_in_flight, redis_url, systems."""
    unknown = sorted(set(params["systems"]) - set(SYSTEMS))
    if unknown:
        raise ValueError(f"bench consume: unknown systems {unknown} (known: {list(SYSTEMS)})")
    repeated = repeat_in_fresh_processes("consume", params, runs, timeout_s=7200)
    print(repeated.describe())
    print_consume_report(repeated.runs, params)
    return 0


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with RedisServer() as server:
        yield server.url
