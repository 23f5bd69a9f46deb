"""``connector-fleet bench consume``: one consumer process running one rule with one
no-op capability, against the same no-op work as a Celery task and an arq job.

The work is nothing, for the three systems. For connector-fleet it runs behind
the whole path: event validation, rule match, parameter templating, the step's
execution record and the XACK, and an event counts as completed when it is
acknowledged (the consumer's ``on_settled``), not when the capability ran: the
record and the XACK after it are part of the cost. The baselines count
completion at the end of their task body (Celery acknowledges before it by
default). Every system stamps completions in memory and writes them to
``bench:done`` every 10 ms (``scripts/bench/_baseline.py``). Throughput: N
events queued first, then the worker starts; rate = completions per second
between the first and the last completion. Latency: after a warm-up of 1,000
events at the same rate (new connections, first calls: not the steady state),
a producer sends at a steady rate for a while; latency = completion minus send.

The baselines run in their own virtualenvs (``scripts/setup --bench``) because
Celery and arq pin incompatible redis-py versions; a missing one is reported,
and the rest still runs.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import redis as sync_redis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming import (
    BreakerBoard,
    CallContext,
    CallMetrics,
    CapabilityRegistry,
    CapabilitySpec,
    Consumer,
    ConsumerMetrics,
    ConsumerOptions,
    Delivery,
    ExecutionDeps,
    RulesHandler,
    build_executor,
    parse_rules,
)
from framework.core import (
    Deadlines,
    SystemClock,
    cancel_and_wait,
    configure_logging,
    create_redis,
    get_logger,
)
from framework.testing import RedisServer
from worker.runtime import freeze_startup_heap, run_event_loop

STREAM = "bench-events"
DONE_KEY = "bench:done"
WARM_UP_EVENTS = 1_000
_DONE_FLUSH_S = 0.01
REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINES = {
    "celery": (REPO_ROOT / ".venv-bench-celery", REPO_ROOT / "scripts/bench/celery_baseline.py"),
    "arq": (REPO_ROOT / ".venv-bench-arq", REPO_ROOT / "scripts/bench/arq_baseline.py"),
}
_RULES = {"version": 1, "rules": [{
    "name": "bench",
    "match": {"streams": [STREAM], "type": "bench.tick"},
    "steps": [{"id": "noop", "call": "bench_noop", "version": "^1",
               "params": {"sent_ms": "{{ payload.sent_ms }}"}}],
}]}
Result = dict[str, Any]


async def _noop(params: Any, context: CallContext) -> None:
    return None


class _Completions:
    """``done_ms:sent_ms`` of each acknowledged entry, stamped when acknowledged and
    written to ``bench:done`` every few milliseconds (one RPUSH for many)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[str] = []

    def settled(self, delivery: Delivery, outcome: str) -> None:
        sent_ms = orjson.loads(delivery.fields["event"])["payload"]["sent_ms"]
        self._pending.append(f"{time.time() * 1000:.3f}:{sent_ms}")

    async def write_forever(self) -> None:
        while True:
            await asyncio.sleep(_DONE_FLUSH_S)
            await self.write()

    async def write(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            await self._redis.rpush(DONE_KEY, *lines)


def _event(sent_ms: float) -> dict[str, bytes]:
    document = {"type": "bench.tick", "source": "bench", "payload": {"sent_ms": sent_ms}}
    return {"event": orjson.dumps(document)}


# -- the connector-fleet worker (a child process) -------------------------------------


async def _serve(url: str, max_in_flight: int) -> int:
    """As ``connector-fleet consume`` builds it without a catalog (metrics included),
    with the no-op capability and the completion stamps."""
    redis = create_redis(url, client_name="bench-consumer")
    registry = CapabilityRegistry()
    registry.register(CapabilitySpec(id="bench_noop", version="1.0.0", handler=_noop))
    logger = get_logger(component="bench")
    prometheus = CollectorRegistry()
    clock, call_metrics = SystemClock(), CallMetrics.create(prometheus)
    executor = build_executor(registry, ExecutionDeps(
        redis=redis, clock=clock, logger=logger, deadlines=Deadlines(),
        breakers=BreakerBoard(redis=redis, clock=clock, logger=logger,
                              gauge=call_metrics.breaker_state),
        call_metrics=call_metrics))
    handler = RulesHandler(parse_rules(_RULES), executor, redis=redis, logger=logger)
    completions = _Completions(redis)
    consumer = Consumer(redis, handler, ConsumerOptions(
        streams=(STREAM,), max_in_flight=max_in_flight, start_id="0", consumer="bench-1",
        block_ms=100), clock=SystemClock(), logger=logger,
        metrics=ConsumerMetrics.create(prometheus), on_settled=completions.settled)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.stop)
    writer = asyncio.create_task(completions.write_forever())
    freeze_startup_heap()
    try:
        await consumer.run()
    finally:
        await cancel_and_wait(writer)
        await completions.write()
        await redis.aclose()
    return 0


def _worker_main(argv: list[str]) -> None:
    configure_logging("WARNING")
    sys.exit(run_event_loop(_serve(argv[0], int(argv[1]))))


def _start_worker(url: str, max_in_flight: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "worker.bench.consume", url,
                             str(max_in_flight)], cwd=REPO_ROOT)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


# -- measurements ------------------------------------------------------------------------


def _wait_for_done(client: sync_redis.Redis, expected: int) -> list[tuple[float, float]]:
    deadline = time.monotonic() + 600
    while client.llen(DONE_KEY) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.llen(DONE_KEY)} of {expected} events done")
        time.sleep(0.05)
    records = []
    for raw in client.lrange(DONE_KEY, 0, -1):
        done, sent = str(raw).split(":")
        records.append((float(done), float(sent)))
    return records


def _ours_throughput(url: str, events: int, max_in_flight: int) -> Result:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    with client.pipeline(transaction=False) as pipe:
        for index in range(events):
            pipe.xadd(STREAM, _event(time.time() * 1000))  # type: ignore[arg-type]
            if index % 1000 == 999:
                pipe.execute()
        pipe.execute()
    worker = _start_worker(url, max_in_flight)
    try:
        done = sorted(d for d, _ in _wait_for_done(client, events))
    finally:
        _stop(worker)
    span_s = (done[-1] - done[0]) / 1000
    return {"system": "connector-fleet", "mode": "throughput", "events": events,
            "seconds": round(span_s, 3), "events_per_s": round((events - 1) / span_s, 1)}


def _ours_latency(url: str, rate: int, duration_s: float, max_in_flight: int) -> Result:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    worker = _start_worker(url, max_in_flight)
    try:
        warm_up_s = WARM_UP_EVENTS / rate
        _send_paced(client, rate, warm_up_s)
        _wait_for_done(client, int(rate * warm_up_s))  # the worker is consuming
        client.delete(DONE_KEY)
        achieved = _send_paced(client, rate, duration_s)
        records = _wait_for_done(client, int(rate * duration_s))
    finally:
        _stop(worker)
    latencies = sorted(d - s for d, s in records)
    cuts = statistics.quantiles(latencies, n=100)
    return {"system": "connector-fleet", "mode": "latency", "rate": rate,
            "achieved_rate": round(achieved), "events": len(latencies),
            "p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2)}


def _send_paced(client: sync_redis.Redis, rate: int, duration_s: float) -> float:
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
                    pipe.xadd(STREAM, _event(time.time() * 1000))  # type: ignore[arg-type]
                pipe.execute()
            sent = due
        else:
            time.sleep(0.0005)
    return total / (time.perf_counter() - start)


def _baseline(system: str, url: str, *args: str) -> Result | None:
    venv, script = BASELINES[system]
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"bench consume: {system} baseline skipped: {venv} is missing "
              "(run scripts/setup --bench)", file=sys.stderr)
        return None
    out = subprocess.run([str(python), str(script), "--redis-url", url, *args],
                         capture_output=True, check=True, text=True).stdout
    result: Result = orjson.loads(out.strip().splitlines()[-1])
    return result


# -- the report ----------------------------------------------------------------------------


def run_consume_bench(events: int, rates: list[int], duration_s: float, max_in_flight: int,
                      redis_url: str | None) -> int:
    configure_logging("WARNING")
    with _redis(redis_url) as url:
        throughput = [_ours_throughput(url, events, max_in_flight)]
        throughput += [r for s in BASELINES if (r := _baseline(
            s, url, "--mode", "throughput", "--events", str(events)))]
        latency = []
        for rate in rates:
            latency.append(_ours_latency(url, rate, duration_s, max_in_flight))
            latency += [r for s in BASELINES if (r := _baseline(
                s, url, "--mode", "latency", "--rate", str(rate),
                "--duration-s", str(duration_s)))]
    _print_report(throughput, latency, max_in_flight)
    return 0


def _print_report(throughput: list[Result], latency: list[Result], max_in_flight: int) -> None:
    ours = throughput[0]["events_per_s"]
    print(f"throughput: {throughput[0]['events']:,} queued events, one worker process "
          f"(connector-fleet max_in_flight={max_in_flight})")
    print(f"{'system':>16} | {'events/s':>10} | connector-fleet is")
    for r in throughput:
        print(f"{r['system']:>16} | {r['events_per_s']:>10,.0f} | "
              f"{ours / r['events_per_s']:.1f}x")
    print("\nlatency, send to completion, at a steady rate")
    print(f"{'system':>16} | {'rate':>7} | {'achieved':>8} | {'p50 ms':>7} | {'p99 ms':>7}")
    for r in latency:
        print(f"{r['system']:>16} | {r['rate']:>7,} | {r['achieved_rate']:>8,} | "
              f"{r['p50_ms']:>7.2f} | {r['p99_ms']:>7.2f}")


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with RedisServer() as server:
        yield server.url


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
