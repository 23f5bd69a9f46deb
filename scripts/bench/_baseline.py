"""What every baseline of `connector-fleet bench consume` shares: arguments, the
completion record the no-op work writes, pacing and the JSON result.

A baseline script runs in its own virtualenv (Celery and arq pin incompatible
redis-py versions), so it imports nothing from connector-fleet. The work is
the same for every system: nothing. Each task stamps its completion
(``done_ms:sent_ms``) in memory, and a thread writes the stamps to ``bench:done``
every 10 ms in one RPUSH, as connector-fleet's worker does: the measurement costs
every system the same few round trips a second, not one per event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable

import redis

DONE_KEY = "bench:done"
# Sent at the measured rate before measuring: new connections and first calls are not
# the steady state (the same warm-up as connector-fleet's run).
WARM_UP_EVENTS = 1_000


def parse_args(system: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{system} baseline for bench consume")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--mode", choices=["throughput", "latency"], required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--duration-s", type=float, default=5.0)
    return parser.parse_args()


_FLUSH_S = 0.01


class Completions:
    """``done(sent_ms)`` from the task body; written to ``bench:done`` by a daemon
    thread (started at the first completion, in the worker process)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pending: list[str] = []
        self._writer: threading.Thread | None = None

    def done(self, sent_ms: float) -> None:
        self._pending.append(f"{time.time() * 1000:.3f}:{sent_ms:.3f}")
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, daemon=True)
            self._writer.start()

    def _write_forever(self) -> None:
        client = redis.Redis.from_url(self._url)
        while True:
            time.sleep(_FLUSH_S)
            if self._pending:
                # Swapping the list is atomic under the GIL: no stamp is lost.
                lines, self._pending = self._pending, []
                client.rpush(DONE_KEY, *lines)


def paced(rate: int, duration_s: float, send: Callable[[float], None]) -> float:
    """Call ``send(sent_ms)`` ``rate`` times a second for ``duration_s``; returns the
    achieved rate. Late sends go at once (no catch-up pause), as a real producer."""
    total = int(rate * duration_s)
    start = time.perf_counter()
    for index in range(total):
        delay = start + index / rate - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)
        send(time.time() * 1000)
    return total / (time.perf_counter() - start)


def wait_for_done(
    client: redis.Redis, expected: int, timeout_s: float
) -> list[tuple[float, float]]:
    deadline = time.monotonic() + timeout_s
    while client.llen(DONE_KEY) < expected:
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {client.llen(DONE_KEY)} of {expected} events done")
        time.sleep(0.05)
    records = []
    for raw in client.lrange(DONE_KEY, 0, -1):
        done, sent = raw.decode().split(":")
        records.append((float(done), float(sent)))
    return records


def throughput_result(system: str, records: list[tuple[float, float]]) -> dict[str, object]:
    done = sorted(d for d, _ in records)
    span_s = (done[-1] - done[0]) / 1000
    return {"system": system, "mode": "throughput", "events": len(done),
            "seconds": round(span_s, 3), "events_per_s": round((len(done) - 1) / span_s, 1)}


def latency_result(system: str, rate: int, achieved: float,
                   records: list[tuple[float, float]]) -> dict[str, object]:
    latencies = sorted(d - s for d, s in records)
    cuts = statistics.quantiles(latencies, n=100)
    return {"system": system, "mode": "latency", "rate": rate, "achieved_rate": round(achieved),
            "events": len(latencies), "p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2)}


def emit(result: dict[str, object]) -> None:
    print(json.dumps(result), flush=True)
