"""What every peer of `connector-fleet bench consume` shares: arguments, the
completion record the no-op work writes, pacing, and the JSON line it prints.

A peer's script runs in its own virtualenv (the peers pin redis-py versions that
conflict), so it imports nothing from connector-fleet. The work is the same for
every system: nothing. Each task stamps its completion (``done_ms:sent_ms``) in
memory, and a thread writes the stamps to ``bench:done`` every 10 ms in one RPUSH,
as connector-fleet's worker does: the measurement costs every system the same few
round trips a second, not one per event. The rows (rates, p50, p99, kept up) are
computed by connector-fleet from ``bench:done`` (worker/bench/load.py), the same
code for every system; the script prints only what its producer achieved.

Producers send what is due every millisecond as one batch (pipelined where the
library offers it, concurrent otherwise), so that 10,000 events/s can be offered
to every system, not only to the ones whose client is fast one call at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.queues
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis

DONE_KEY = "bench:done"
# Sent at the measured rate before measuring: new connections and first calls are not
# the steady state (the same warm-up as connector-fleet's run).
WARM_UP_EVENTS = 1_000
DONE_TIMEOUT_S = 600.0
STALL_S = 60.0
_FLUSH_S = 0.01
_TICK_S = 0.001


def parse_args(system: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{system} peer of bench consume")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--mode", choices=["throughput", "latency"], required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="the worker's concurrency (connector-fleet's max_in_flight)",
    )
    return parser.parse_args()


class Completions:
    """``done(sent_ms)`` from the task body; written to ``bench:done`` by a daemon
    thread (started at the first completion, in the worker process)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pending: list[str] = []
        # Tasks may run on several threads, and the writer swaps the list: without the
        # lock a stamp appended to the list being written is lost.
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def done(self, sent_ms: float) -> None:
        with self._lock:
            self._pending.append(f"{time.time() * 1000:.3f}:{sent_ms:.3f}")
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, daemon=True)
            self._writer.start()

    def _write_forever(self) -> None:
        client = redis.Redis.from_url(self._url)
        while True:
            time.sleep(_FLUSH_S)
            with self._lock:
                lines, self._pending = self._pending, []
            if lines:
                client.rpush(DONE_KEY, *lines)


class Pacer:
    """How many sends are due now, for ``rate`` a second over ``duration_s``. Late
    sends go at once (no catch-up pause), as a real producer's would."""

    def __init__(self, rate: int, duration_s: float) -> None:
        self.total = int(rate * duration_s)
        self._rate = rate
        self._sent = 0
        self._start = time.perf_counter()

    @property
    def finished(self) -> bool:
        return self._sent >= self.total

    def take_due(self) -> int:
        due = min(self.total, int((time.perf_counter() - self._start) * self._rate) + 1)
        count, self._sent = max(0, due - self._sent), max(self._sent, due)
        return count

    def achieved(self) -> float:
        return self.total / (time.perf_counter() - self._start)


def paced(rate: int, duration_s: float, send_batch: Callable[[int], None]) -> float:
    """``send_batch(n)`` with the sends due, each millisecond; the rate achieved."""
    pacer = Pacer(rate, duration_s)
    while not pacer.finished:
        count = pacer.take_due()
        if count:
            send_batch(count)
        else:
            time.sleep(_TICK_S / 2)
    return pacer.achieved()


def _paced_child(
    rate: float,
    duration_s: float,
    make_send: Callable[[], Callable[[int], None]],
    results: multiprocessing.queues.Queue[float],
) -> None:
    results.put(paced(rate, duration_s, make_send()))  # type: ignore[arg-type]


def paced_in_processes(
    rate: int, duration_s: float, processes: int, make_send: Callable[[], Callable[[int], None]]
) -> float:
    """``paced`` split over ``processes`` forked producers (each makes its own client
    with ``make_send()`` and sends ``rate / processes`` a second), for the libraries
    whose message building alone is too slow for one process; the rates achieved
    add up."""
    if processes == 1:
        return paced(rate, duration_s, make_send())
    context = multiprocessing.get_context("fork")
    results: multiprocessing.queues.Queue[float] = context.Queue()
    children = [
        context.Process(
            target=_paced_child, args=(rate / processes, duration_s, make_send, results)
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    achieved = sum(results.get(timeout=duration_s + 120) for _ in children)
    for child in children:
        child.join()
    return achieved


async def paced_async(
    rate: int, duration_s: float, send_batch: Callable[[int], Awaitable[None]]
) -> float:
    """``paced`` for an asyncio producer."""
    pacer = Pacer(rate, duration_s)
    while not pacer.finished:
        count = pacer.take_due()
        if count:
            await send_batch(count)
        else:
            await asyncio.sleep(_TICK_S / 2)
    return pacer.achieved()


def now_ms() -> float:
    return time.time() * 1000


def wait_for_done(client: redis.Redis, expected: int) -> None:
    """Until ``expected`` completions are recorded; exits naming how many were if none
    came for ``STALL_S`` (a lost event) or the whole wait took ``DONE_TIMEOUT_S``."""
    deadline = time.monotonic() + DONE_TIMEOUT_S
    last, last_progress = -1, time.monotonic()
    while (done := client.llen(DONE_KEY)) < expected:
        now = time.monotonic()
        if done != last:
            last, last_progress = done, now
        if now > deadline or now - last_progress > STALL_S:
            sys.exit(f"{done} of {expected} events done; none for {now - last_progress:.0f} s")
        time.sleep(0.05)


def start_worker_process(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The peer's worker in its own process group (a worker may fork children)."""
    return subprocess.Popen(
        command,
        cwd=Path(__file__).parent,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group; SIGKILL after 10 s."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def run_modes(
    args: argparse.Namespace,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    queue: Callable[[int], None],
    send: Callable[[int, float], float],
    prepare: Callable[[redis.Redis], None] | None = None,
) -> dict[str, object]:
    """The throughput or latency run of a peer: ``queue(count)`` sends ``count`` events
    as fast as it can, ``send(rate, duration_s)`` at a steady rate and returns the
    rate achieved; ``start_worker()`` starts the worker (``start_worker_process``);
    ``prepare(client)`` runs on the flushed database before anything is sent."""
    # SIGTERM (connector-fleet gave up on this run) ends the script through the
    # finally below, so that the worker does not outlive it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    client = redis.Redis.from_url(args.redis_url)
    client.flushall()
    if prepare is not None:
        prepare(client)
    if args.mode == "throughput":
        queue(args.events)
    worker = start_worker()
    try:
        if args.mode == "throughput":
            wait_for_done(client, args.events)
            return {"events": args.events}
        warm_up_s = WARM_UP_EVENTS / args.rate
        send(args.rate, warm_up_s)
        wait_for_done(client, int(args.rate * warm_up_s))
        client.delete(DONE_KEY)
        achieved = send(args.rate, args.duration_s)
        wait_for_done(client, int(args.rate * args.duration_s))
        return {"achieved_rate": achieved}
    finally:
        stop_worker(worker)


def emit(result: dict[str, object]) -> None:
    print(json.dumps(result), flush=True)
