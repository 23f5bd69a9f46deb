"""arq baseline: the no-op work as an arq job.

Run by ``connector-fleet bench consume`` with the arq virtualenv's Python
(``scripts/setup --bench``). One worker process with arq's defaults except
``poll_delay`` (0.5 s by default: it would dominate every latency figure) and
``keep_result=0`` (results are not read).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from arq import create_pool
from arq.connections import RedisSettings

sys.path.insert(0, str(Path(__file__).parent))
import _baseline

_completions = _baseline.Completions(os.environ.get("BENCH_REDIS_URL", "redis://"))


async def noop(ctx: dict[str, Any], sent_ms: float) -> None:
    _completions.done(sent_ms)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://"))
    poll_delay = 0.005
    keep_result = 0
    handle_signals = True


def start_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "arq_baseline.WorkerSettings"],
        cwd=Path(__file__).parent, env={**os.environ, "BENCH_REDIS_URL": url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def produce(url: str, count: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    for _ in range(count):
        await pool.enqueue_job("noop", time.time() * 1000)
    await pool.aclose()


async def produce_paced(url: str, rate: int, duration_s: float) -> float:
    pool = await create_pool(RedisSettings.from_dsn(url))
    total = int(rate * duration_s)
    start = time.perf_counter()
    for index in range(total):
        delay = start + index / rate - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        await pool.enqueue_job("noop", time.time() * 1000)
    achieved = total / (time.perf_counter() - start)
    await pool.aclose()
    return achieved


def main() -> None:
    args = _baseline.parse_args("arq")
    client = redis.Redis.from_url(args.redis_url)
    client.flushall()
    if args.mode == "throughput":
        asyncio.run(produce(args.redis_url, args.events))
        worker = start_worker(args.redis_url)
        records = _baseline.wait_for_done(client, args.events, timeout_s=600)
        result = _baseline.throughput_result("arq", records)
    else:
        worker = start_worker(args.redis_url)
        warm_up_s = _baseline.WARM_UP_EVENTS / args.rate
        asyncio.run(produce_paced(args.redis_url, args.rate, warm_up_s))
        _baseline.wait_for_done(client, int(args.rate * warm_up_s), timeout_s=600)
        client.delete(_baseline.DONE_KEY)
        achieved = asyncio.run(produce_paced(args.redis_url, args.rate, args.duration_s))
        records = _baseline.wait_for_done(client, int(args.rate * args.duration_s), 600)
        result = _baseline.latency_result("arq", args.rate, achieved, records)
    worker.terminate()
    worker.wait(30)
    _baseline.emit(result)


if __name__ == "__main__":
    main()
