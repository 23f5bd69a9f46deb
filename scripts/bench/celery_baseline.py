"""Celery baseline (Redis broker): the no-op work as a Celery task.

Run by ``connector-fleet bench consume`` with the Celery virtualenv's Python
(``scripts/setup --bench``). One worker process, ``--pool=solo`` (Celery's
fastest single-process pool for short tasks), results ignored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from celery import Celery

sys.path.insert(0, str(Path(__file__).parent))
import _baseline

app = Celery("celery_baseline", broker=os.environ.get("BENCH_REDIS_URL", "redis://"))
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)
_completions = _baseline.Completions(os.environ.get("BENCH_REDIS_URL", "redis://"))


@app.task(name="bench.noop")
def noop(sent_ms: float) -> None:
    _completions.done(sent_ms)


def start_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_baseline", "worker",
         "--pool=solo", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=Path(__file__).parent, env={**os.environ, "BENCH_REDIS_URL": url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    args = _baseline.parse_args("celery")
    app.conf.broker_url = args.redis_url
    client = redis.Redis.from_url(args.redis_url)
    client.flushall()
    if args.mode == "throughput":
        for _ in range(args.events):
            noop.delay(time.time() * 1000)
        worker = start_worker(args.redis_url)
        records = _baseline.wait_for_done(client, args.events, timeout_s=600)
        result = _baseline.throughput_result("celery", records)
    else:
        worker = start_worker(args.redis_url)
        warm_up_s = _baseline.WARM_UP_EVENTS / args.rate
        _baseline.paced(args.rate, warm_up_s, lambda sent_ms: noop.delay(sent_ms))
        _baseline.wait_for_done(client, int(args.rate * warm_up_s), timeout_s=600)
        client.delete(_baseline.DONE_KEY)
        achieved = _baseline.paced(args.rate, args.duration_s,
                                   lambda sent_ms: noop.delay(sent_ms))
        records = _baseline.wait_for_done(client, int(args.rate * args.duration_s), 600)
        result = _baseline.latency_result("celery", args.rate, achieved, records)
    worker.terminate()
    worker.wait(30)
    _baseline.emit(result)


if __name__ == "__main__":
    main()
