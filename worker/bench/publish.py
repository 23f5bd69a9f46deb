"""``connector-fleet bench publish``: the cost of diff + transform + publish + state.

For each size N: poll 1 publishes N new synthetic items, poll 2 sees 10% of
them changed. The first poll's rate is compared, in the same run and on the
same Redis, with a raw redis-py pipeline of XADDs of the same payloads (what
the connector must at least approach; it also records versions atomically
and fences on the lease).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from framework.core import SystemClock, configure_logging, create_redis, get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorState,
    FetchResult,
    Lease,
    SourceParts,
    StateStore,
    UniversalPollingConnector,
    encode_signal,
)
from framework.testing import RedisServer

_PIPELINE_CHUNK = 5_000


@dataclass
class _Source:
    items: list[dict[str, Any]]


def _synthetic_items(count: int, generation: int, changed_ratio: float) -> list[dict[str, Any]]:
    changed_every = max(1, round(1 / changed_ratio)) if changed_ratio > 0 else count + 1
    return [
        {
            "id": f"item-{i}",
            "severity": ("Minor", "Moderate", "Severe")[i % 3],
            "value": i * 1.5,
            "rev": generation if i % changed_every == 0 else 0,
            "text": "synthetic alert body " * 4,
        }
        for i in range(count)
    ]


async def _fetch(source: _Source, _: ConnectorState) -> FetchResult[dict[str, Any]]:
    return FetchResult(items=source.items)


def _transform(raw: dict[str, Any]) -> dict[str, Any]:
    return {"id": raw["id"], "severity": raw["severity"], "value": raw["value"], "rev": raw["rev"]}


async def _raw_pipelined_xadd(redis: Redis, stream: str, items: list[dict[str, Any]]) -> float:
    payloads = [encode_signal(_transform(raw)) for raw in items]
    started = time.perf_counter()
    for offset in range(0, len(payloads), _PIPELINE_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for i, payload in enumerate(payloads[offset : offset + _PIPELINE_CHUNK], offset):
                pipe.xadd(stream, {"connector": "bench", "type": "BENCH",
                                   "item_id": f"item-{i}", "version": "v", "payload": payload})
            await pipe.execute()
    return time.perf_counter() - started


async def _bench_size(redis: Redis, count: int, changed_ratio: float) -> dict[str, float]:
    await redis.flushdb()
    config = ConnectorConfig(name=f"bench-{count}", type="BENCH", stream_max_len=10 * count)
    lease = Lease(redis, config.name, ttl_s=300)
    assert await lease.try_acquire()
    clock = SystemClock()
    source = _Source(_synthetic_items(count, 0, changed_ratio))
    connector = UniversalPollingConnector[_Source, dict[str, Any], dict[str, Any]](
        config=config,
        parts=SourceParts(provider=source, fetcher=_fetch, item_id=lambda raw: raw["id"],
                          transformer=_transform),
        store=StateStore(redis, config, lease, clock=clock),
        logger=get_logger(connector=config.name),
    )
    started = time.perf_counter()
    first = await connector.poll()
    first_s = time.perf_counter() - started
    source.items = _synthetic_items(count, 1, changed_ratio)
    started = time.perf_counter()
    second = await connector.poll()
    second_s = time.perf_counter() - started
    raw_s = await _raw_pipelined_xadd(redis, "bench-raw", source.items)
    assert first.published == count and second.published == round(count * changed_ratio)
    return {
        "items": count,
        "first_poll_s": first_s,
        "first_rate": count / first_s,
        "raw_rate": count / raw_s,
        "ratio": (count / first_s) / (count / raw_s),
        "second_poll_s": second_s,
        "second_published": second.published,
    }


async def _run(sizes: list[int], changed_ratio: float, url: str) -> list[dict[str, float]]:
    redis = create_redis(url)
    try:
        return [await _bench_size(redis, size, changed_ratio) for size in sizes]
    finally:
        await redis.aclose()


def run_publish_bench(sizes: list[int], changed_ratio: float, redis_url: str | None) -> int:
    configure_logging("WARNING")
    if redis_url is None:
        with RedisServer() as server:
            results = asyncio.run(_run(sizes, changed_ratio, server.url))
    else:
        results = asyncio.run(_run(sizes, changed_ratio, redis_url))
    print(f"{'items':>8} | {'poll 1 (all new)':>17} | {'raw XADD pipeline':>17} | {'ratio':>5} | "
          f"poll 2 ({changed_ratio:.0%} changed)")
    for r in results:
        print(f"{r['items']:>8,.0f} | {r['first_rate']:>11,.0f} it/s | {r['raw_rate']:>11,.0f} it/s"
              f" | {r['ratio']:>5.2f} | {r['second_poll_s'] * 1000:,.0f} ms "
              f"({r['second_published']:,.0f} published)")
    return 0
