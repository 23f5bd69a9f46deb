"""The load of ``bench consume`` and what it measures, the same for every system.

Producers (for the systems that read ``bench-events``: connector-fleet and the
raw limit loop): events queued up front, or sent at a steady rate with what is
due every millisecond in one pipeline. Every system writes ``done_ms:sent_ms``
per completed event to ``bench:done``; the rows are computed here from that list,
by one piece of code for every system (peers included).

An event's latency is its completion time minus its send time. A worker *kept up*
with a rate when the last event sent was completed within ``KEPT_UP_LAG_MS`` of
being sent: a worker slower than the rate leaves a backlog that grows for the
whole run, and clearing it takes far longer than that.
"""

from __future__ import annotations

import statistics
import time

import orjson
import redis as sync_redis

from worker.bench.stats import Row

STREAM = "bench-events"
DONE_KEY = "bench:done"
WARM_UP_EVENTS = 1_000
KEPT_UP_LAG_MS = 1_000.0
STALL_S = 60.0
_QUEUE_CHUNK = 1_000
Records = list[tuple[float, float]]


def event_fields(sent_ms: float) -> dict[str, bytes]:
    document = {"type": "bench.tick", "source": "bench", "payload": {"sent_ms": sent_ms}}
    return {"event": orjson.dumps(document)}


def queue_events(client: sync_redis.Redis, count: int) -> None:
    """``count`` events in ``bench-events``, pipelined, before any worker starts."""
    with client.pipeline(transaction=False) as pipe:
        for index in range(count):
            pipe.xadd(STREAM, event_fields(time.time() * 1000))  # type: ignore[arg-type]
            if index % _QUEUE_CHUNK == _QUEUE_CHUNK - 1:
                pipe.execute()
        pipe.execute()


def send_paced(client: sync_redis.Redis, rate: int, duration_s: float) -> float:
    """Send what is due every millisecond in one pipeline, each event stamped when
    sent; returns the rate achieved."""
    total = int(rate * duration_s)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            with client.pipeline(transaction=False) as pipe:
                for _ in range(due - sent):
                    pipe.xadd(STREAM, event_fields(time.time() * 1000))  # type: ignore[arg-type]
                pipe.execute()
            sent = due
        else:
            time.sleep(0.0005)
    return total / (time.perf_counter() - start)


def wait_for_done(client: sync_redis.Redis, expected: int, timeout_s: float) -> Records:
    """The completion records once ``expected`` are in; TimeoutError naming how many are
    if none came for ``STALL_S`` (an event lost) or the wait took ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last, last_progress = -1, time.monotonic()
    while (done := int(client.llen(DONE_KEY))) < expected:
        now = time.monotonic()
        if done != last:
            last, last_progress = done, now
        if now > deadline or now - last_progress > STALL_S:
            raise TimeoutError(
                f"{done} of {expected} events completed; none for {now - last_progress:.0f} s"
            )
        time.sleep(0.05)
    return read_done(client)


def read_done(client: sync_redis.Redis) -> Records:
    records = []
    for raw in client.lrange(DONE_KEY, 0, -1):
        done, sent = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(":")
        records.append((float(done), float(sent)))
    return records


def throughput_row(system: str, records: Records) -> Row:
    """Completions per second between the first and the last completion."""
    done = sorted(d for d, _ in records)
    span_s = max((done[-1] - done[0]) / 1000, 1e-9)
    return {"system": system, "events": len(done), "events_per_s": (len(done) - 1) / span_s}


def latency_row(system: str, rate: int, achieved: float, records: Records) -> Row:
    latencies = sorted(d - s for d, s in records)
    cuts = statistics.quantiles(latencies, n=100)
    last_sent = max(s for _, s in records)
    lag_ms = max(d for d, _ in records) - last_sent
    return {
        "system": system,
        "rate": rate,
        "achieved_rate": achieved,
        "events": len(latencies),
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "kept_up": lag_ms <= KEPT_UP_LAG_MS,
    }
