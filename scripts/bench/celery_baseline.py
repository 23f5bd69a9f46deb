"""Celery peer (Redis broker): the no-op work as a Celery task.

Run by ``connector-fleet bench consume`` with the Celery virtualenv's Python
(``scripts/setup --bench``). One worker process, ``--pool=solo`` (Celery's
fastest single-process pool for short tasks), results ignored, and the prefetch
tuned: ``--prefetch-multiplier`` = ``--max-in-flight`` (the default, 4, makes the
worker fetch a handful of messages per round trip). The producer sends what is
due each millisecond in one Redis pipeline (kombu's ``Producer.batch()``), from
``PRODUCERS`` processes: building a Celery message takes a few hundred microseconds,
so one process cannot offer 10,000 tasks/s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from celery import Celery

sys.path.insert(0, str(Path(__file__).parent))
import _baseline

app = Celery("celery_baseline", broker=os.environ.get("BENCH_REDIS_URL", "redis://"))
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_completions = _baseline.Completions(os.environ.get("BENCH_REDIS_URL", "redis://"))
PRODUCERS = 4


@app.task(name="bench.noop")
def noop(sent_ms: float) -> None:
    _completions.done(sent_ms)


def start_worker(url: str, max_in_flight: int) -> subprocess.Popen[bytes]:
    return _baseline.start_worker_process(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_baseline",
            "worker",
            "--pool=solo",
            f"--prefetch-multiplier={max_in_flight}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        {"BENCH_REDIS_URL": url},
    )


def send_batch(count: int) -> None:
    """``count`` tasks sent in one pipeline (one round trip)."""
    with app.producer_or_acquire() as producer:
        if not hasattr(producer, "batch"):  # kombu < 5.7: one round trip per task
            for _ in range(count):
                noop.apply_async((_baseline.now_ms(),), producer=producer)
            return
        with producer.batch(max_size=max(count, 1)):
            for _ in range(count):
                noop.apply_async((_baseline.now_ms(),), producer=producer)


def queue(count: int) -> None:
    for offset in range(0, count, 1_000):
        send_batch(min(1_000, count - offset))


def main() -> None:
    args = _baseline.parse_args("celery")
    app.conf.broker_url = args.redis_url
    result = _baseline.run_modes(
        args,
        lambda: start_worker(args.redis_url, args.max_in_flight),
        queue,
        lambda rate, duration_s: _baseline.paced_in_processes(
            rate, duration_s, PRODUCERS, lambda: send_batch
        ),
    )
    _baseline.emit(result)


if __name__ == "__main__":
    main()
