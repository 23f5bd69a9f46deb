"""arq peer: the no-op work as an arq job.

Run by ``connector-fleet bench consume`` with the arq virtualenv's Python
(``scripts/setup --bench``). One worker process with arq's defaults except
``max_jobs`` = ``--max-in-flight`` (connector-fleet's concurrency; arq's default
is 10), ``poll_delay`` 5 ms (0.5 s by default: it would dominate every latency
figure) and ``keep_result=0`` (results are not read).

The producer writes what ``ArqRedis.enqueue_job`` writes per job (the job,
serialized by arq's ``serialize_job``, under ``arq:job:<id>`` with its expiry,
and the id in the queue's sorted set), for all the jobs due each millisecond in
one pipeline; ``enqueue_job`` itself takes several round trips per job (WATCH,
EXISTS, MULTI/EXEC: a uniqueness check that fresh ids never need) and cannot offer
10,000 jobs/s from one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import redis
from arq.connections import RedisSettings
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job

sys.path.insert(0, str(Path(__file__).parent))
import _baseline

_completions = _baseline.Completions(os.environ.get("BENCH_REDIS_URL", "redis://"))


async def noop(ctx: dict[str, Any], sent_ms: float) -> None:
    _completions.done(sent_ms)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://"))
    max_jobs = int(os.environ.get("BENCH_MAX_IN_FLIGHT", "64"))
    poll_delay = 0.005
    keep_result = 0
    handle_signals = True


def start_worker(url: str, max_in_flight: int) -> subprocess.Popen[bytes]:
    return _baseline.start_worker_process(
        [sys.executable, "-m", "arq", "arq_baseline.WorkerSettings"],
        {"BENCH_REDIS_URL": url, "BENCH_MAX_IN_FLIGHT": str(max_in_flight)},
    )


class Producer:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)

    def send_batch(self, count: int) -> None:
        """``count`` jobs in one pipeline, as ``enqueue_job`` writes each."""
        with self._client.pipeline(transaction=False) as pipe:
            for _ in range(count):
                job_id = uuid4().hex
                enqueue_time_ms = int(time.time() * 1000)
                job = serialize_job("noop", (_baseline.now_ms(),), {}, None, enqueue_time_ms)
                pipe.psetex(job_key_prefix + job_id, expires_extra_ms, job)
                pipe.zadd(default_queue_name, {job_id: enqueue_time_ms})
            pipe.execute()

    def queue(self, count: int) -> None:
        for offset in range(0, count, 1_000):
            self.send_batch(min(1_000, count - offset))


def main() -> None:
    args = _baseline.parse_args("arq")
    producer = Producer(args.redis_url)
    result = _baseline.run_modes(
        args,
        lambda: start_worker(args.redis_url, args.max_in_flight),
        producer.queue,
        lambda rate, duration_s: _baseline.paced(rate, duration_s, producer.send_batch),
    )
    _baseline.emit(result)


if __name__ == "__main__":
    main()
