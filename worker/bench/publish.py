"""``connector-fleet bench publish``: the cost of diff + transform + publish + state.

For each size N: poll 1 publishes N new synthetic items, poll 2 sees 10% of
them changed. The first poll's rate is compared, in the same run and on the
same Redis, with two baselines doing the same writes without the framework
(``publish_baselines``): a bare Lua script and a plain sync redis-py pipeline.
Each run is a fresh process (``worker.bench.repeat``); the report gives the
median and range of the runs.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis as sync_redis
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorState,
    FetchResult,
    Lease,
    ReplicaAcks,
    SourceParts,
    StateStore,
    UniversalPollingConnector,
    encode_signal,
)
from framework.testing import RedisServer, wait_until
from worker.bench.publish_baselines import (
    bare_lua_seconds,
    items_from_payloads,
    sync_pipeline_seconds,
)
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, summarize

_KEY_FIELDS = ("items",)


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


async def _bench_size(redis: Redis, count: int, changed_ratio: float, acks: ReplicaAcks) -> Row:
    await redis.flushdb()
    config = ConnectorConfig(name=f"bench-{count}", type="BENCH", stream_max_len=10 * count)
    lease = Lease(redis, config.name, ttl_s=300)
    assert await lease.try_acquire()
    clock = SystemClock()
    source = _Source(_synthetic_items(count, 0, changed_ratio))
    connector = UniversalPollingConnector[_Source, dict[str, Any], dict[str, Any]](
        config=config,
        parts=SourceParts(
            provider=source, fetcher=_fetch, item_id=lambda raw: raw["id"], transformer=_transform
        ),
        store=StateStore(redis, config, lease, clock=clock, acks=acks),
        logger=get_logger(connector=config.name),
    )
    started = time.perf_counter()
    first = await connector.poll()
    first_s = time.perf_counter() - started
    source.items = _synthetic_items(count, 1, changed_ratio)
    started = time.perf_counter()
    second = await connector.poll()
    second_s = time.perf_counter() - started
    assert first.published == count and second.published == round(count * changed_ratio)
    return {
        "items": count,
        "first_poll_s": first_s,
        "first_rate": count / first_s,
        "second_poll_s": second_s,
        "second_published": second.published,
    }


def _baseline_rates(url: str, items: list[dict[str, Any]], max_len: int) -> Row:
    baseline_items = items_from_payloads([encode_signal(_transform(raw)) for raw in items])
    client = sync_redis.Redis.from_url(url)
    try:
        lua_s = bare_lua_seconds(client, baseline_items, max_len)
        pipeline_s = sync_pipeline_seconds(client, baseline_items, max_len)
    finally:
        client.close()
    count = len(items)
    return {"lua_rate": count / lua_s, "pipeline_rate": count / pipeline_s}


async def _polls(sizes: list[int], changed_ratio: float, url: str, acks: ReplicaAcks
                 ) -> list[Row]:
    redis = create_redis(url)
    try:
        return [await _bench_size(redis, size, changed_ratio, acks) for size in sizes]
    finally:
        await redis.aclose()


def _measure_at(url: str, sizes: list[int], changed_ratio: float, acks: ReplicaAcks
                ) -> list[Row]:
    rows = asyncio.run(_polls(sizes, changed_ratio, url, acks))
    for row in rows:
        count = int(row["items"])
        row.update(_baseline_rates(url, _synthetic_items(count, 0, changed_ratio), 10 * count))
        row["lua_ratio"] = row["first_rate"] / row["lua_rate"]
        row["pipeline_ratio"] = row["first_rate"] / row["pipeline_rate"]
    return rows


def measure(params: Row) -> list[Row]:
    """One run (in the process ``worker.bench.once`` started): every size, its rows."""
    sizes, ratio, url = params["sizes"], params["changed_ratio"], params["redis_url"]
    # WAIT for this many replicas after each commit (REDIS_MIN_REPLICAS_ACKS).
    acks = ReplicaAcks(replicas=params.get("replica_acks", 0), timeout_ms=10_000)
    if url is not None:
        return _measure_at(url, sizes, ratio, acks)
    with ExitStack() as servers:
        master = servers.enter_context(RedisServer())
        for _ in range(max(acks.replicas, params.get("replicas", 0))):
            replica = servers.enter_context(RedisServer(
                extra_args=("--replicaof", "127.0.0.1", str(master.port))))
            wait_until(partial(_in_sync, replica.port), "a replica in sync")
        return _measure_at(master.url, sizes, ratio, acks)


def _in_sync(port: int) -> bool:
    with sync_redis.Redis(port=port, decode_responses=True) as client:
        return bool(client.info("replication")["master_link_status"] == "up")


def run_publish_bench(
    sizes: list[int], changed_ratio: float, redis_url: str | None, runs: int,
    replica_acks: int = 0, replicas: int = 0,
) -> int:
    params = {"sizes": sizes, "changed_ratio": changed_ratio, "redis_url": redis_url,
              "replica_acks": replica_acks, "replicas": replicas}
    if replicas or replica_acks:
        print(f"Redis with {max(replicas, replica_acks)} replica(s); each commit waits "
              f"for {replica_acks} (WAIT)")
    repeated = repeat_in_fresh_processes("publish", params, runs, timeout_s=1800)
    print(repeated.describe())
    print_publish_report(summarize(repeated.runs, _KEY_FIELDS), changed_ratio)
    return 0


def print_publish_report(rows: list[SummaryRow], changed_ratio: float) -> None:
    print(
        "items/s of poll 1 (all new), of the bare Lua script and of the sync pipeline "
        "(same XADD + HSET per item); ratio = poll 1 / baseline"
    )
    print(
        f"{'items':>8} | {'poll 1 it/s':>24} | {'bare Lua it/s':>24} | "
        f"{'sync pipeline it/s':>24} | {'vs Lua':>17} | {'vs pipeline':>17} | "
        f"poll 2 ms ({changed_ratio:.0%} changed)"
    )
    for row in rows:
        print(
            f"{row.key['items']:>8,} | {row.cell('first_rate'):>24} | "
            f"{row.cell('lua_rate'):>24} | {row.cell('pipeline_rate'):>24} | "
            f"{row.cell('lua_ratio', '.2f'):>17} | {row.cell('pipeline_ratio', '.2f'):>17} | "
            f"{row.cell('second_poll_s', factor=1000)} "
            f"({row.spreads['second_published'].median:,.0f} published)"
        )
