"""``connector-fleet bench scale``: publish and consume on one server against a Redis
Cluster of 3 masters, with the output stream as 1, 3 or 6 shards, and the cost of
``WAIT 1`` (REDIS_MIN_REPLICAS_ACKS=1) on the cluster.

For each setup, in one run (a fresh process, ``worker.bench.repeat``) with its own
private servers: ``CONNECTORS`` connectors each publish ``items / CONNECTORS`` new
synthetic items in one poll, concurrently (the fenced commit of every connector, on its
shard); then one consumer, built as ``connector-fleet consume`` builds it without a
catalog (one rule, one no-op local capability, the step record and the XACK), reads
every shard until none has anything left. Figures: published items/s (all connectors
together) and consumed events/s; also Redis's ``MEMORY USAGE`` of one connector's keys
(``control B``: lease and state; ``B/item``: its versions hash per tracked item).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from typing import Any

from framework.consuming import (
    BreakerBoard,
    CallContext,
    CapabilityRegistry,
    CapabilitySpec,
    Consumer,
    ConsumerOptions,
    ExecutionDeps,
    RulesHandler,
    build_executor,
    parse_rules,
)
from framework.core import Deadlines, KeyScheme, SystemClock, create_redis, get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorState,
    FetchResult,
    Lease,
    ReplicaAcks,
    SourceParts,
    StateStore,
    UniversalPollingConnector,
)
from framework.testing import RedisCluster, RedisServer
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, summarize

CONNECTORS = 6
STREAM = "signals"
# (topology, shards, replica acks): the setups of one run, in order.
SETUPS: tuple[tuple[str, int, int], ...] = (
    ("single", 1, 0), ("cluster", 1, 0), ("cluster", 3, 0), ("cluster", 6, 0),
    ("cluster", 3, 1),
)
_KEY_FIELDS = ("topology", "shards", "acks")
_LOG = get_logger(component="bench-scale")


def _items(connector: str, count: int) -> list[dict[str, Any]]:
    return [{"id": f"{connector}-{i}", "value": i, "text": "synthetic body " * 4}
            for i in range(count)]


async def _fetch(items: list[dict[str, Any]], _: ConnectorState) -> FetchResult[dict[str, Any]]:
    return FetchResult(items=items)


def _config(name: str, shards: int, count: int) -> ConnectorConfig:
    return ConnectorConfig(name=name, type="BENCH", output_stream=STREAM,
                           output_shards=shards, stream_max_len=10 * count)


async def _publish(redis: Any, scheme: KeyScheme, shards: int, per_connector: int,
                   acks: ReplicaAcks) -> float:
    """Every connector's first poll, concurrently; the items published per second."""
    polls = []
    for index in range(CONNECTORS):
        config = _config(f"bench-{index}", shards, per_connector)
        lease = Lease(redis, config.name, ttl_s=300, key=config.keys(scheme).lease)
        assert await lease.try_acquire()
        items = _items(config.name, per_connector)
        connector = UniversalPollingConnector[list[dict[str, Any]], dict[str, Any],
                                              dict[str, Any]](
            config=config, logger=_LOG.bind(connector=config.name),
            parts=SourceParts(provider=items, fetcher=_fetch, item_id=lambda raw: raw["id"],
                              transformer=dict),
            store=StateStore(redis, config, lease, clock=SystemClock(), scheme=scheme,
                             acks=acks))
        polls.append(connector.poll())
    started = time.perf_counter()
    results = await asyncio.gather(*polls)
    elapsed = time.perf_counter() - started
    assert sum(r.published for r in results) == CONNECTORS * per_connector
    return CONNECTORS * per_connector / elapsed


async def _noop(params: Any, context: CallContext) -> None:
    return None


def _handler(redis: Any, streams: list[str]) -> RulesHandler:
    registry = CapabilityRegistry()
    registry.register(CapabilitySpec(id="bench_noop", version="1.0.0", handler=_noop,
                                     local=True))
    clock = SystemClock()
    executor = build_executor(registry, ExecutionDeps(
        redis=redis, clock=clock, logger=_LOG, deadlines=Deadlines(),
        breakers=BreakerBoard(redis=redis, clock=clock, logger=_LOG), call_metrics=None))
    rules = {"version": 1, "rules": [{"name": "bench", "match": {"streams": streams},
                                      "steps": [{"id": "noop", "call": "bench_noop"}]}]}
    return RulesHandler(parse_rules(rules), executor, redis=redis, logger=_LOG)


async def _consume(redis: Any, streams: list[str], expected: int) -> float:
    """One consumer over every shard until all is read; events per second."""
    consumer = Consumer(redis, _handler(redis, streams), ConsumerOptions(
        streams=tuple(streams), start_id="0", consumer="bench-1", block_ms=100,
        max_in_flight=64, burst=True), clock=SystemClock(), logger=_LOG)
    started = time.perf_counter()
    await consumer.run()
    elapsed = time.perf_counter() - started
    pending = sum([int((await redis.xpending(s, "connector-fleet"))["pending"])
                   for s in streams])
    assert pending == 0, f"{pending} entries left pending"
    return expected / elapsed


async def _memory(redis: Any, scheme: KeyScheme, shards: int, per_connector: int) -> Row:
    keys = _config("bench-0", shards, per_connector).keys(scheme)
    control = sum([int(await redis.memory_usage(k) or 0) for k in (keys.lease, keys.state)])
    versions = int(await redis.memory_usage(keys.versions, samples=0) or 0)
    return {"control_bytes": control, "bytes_per_item": versions / per_connector}


async def _measure_setup(url: str, topology: str, shards: int, acks: int,
                         items: int) -> Row:
    redis: Any = create_redis(url)
    scheme = KeyScheme(tagged=topology == "cluster")
    per_connector = items // CONNECTORS
    try:
        published_rate = await _publish(redis, scheme, shards, per_connector,
                                        ReplicaAcks(acks, 10_000))
        streams = scheme.shard_streams(STREAM, shards)
        consumed_rate = await _consume(redis, streams, CONNECTORS * per_connector)
        memory = await _memory(redis, scheme, shards, per_connector)
    finally:
        await redis.aclose()
    return {"topology": topology, "shards": shards, "acks": acks,
            "publish_rate": published_rate, "consume_rate": consumed_rate, **memory}


def measure(params: Row) -> list[Row]:
    """One run: every setup, each on servers of its own."""
    rows = []
    for topology, shards, acks in SETUPS:
        with ExitStack() as servers:
            if topology == "single":
                url = servers.enter_context(RedisServer()).url
            else:
                url = servers.enter_context(RedisCluster(masters=3, replicas=acks)).url
            rows.append(asyncio.run(_measure_setup(url, topology, shards, acks,
                                                   int(params["items"]))))
    return rows


def run_scale_bench(items: int, runs: int) -> int:
    repeated = repeat_in_fresh_processes("scale", {"items": items}, runs, timeout_s=1800)
    print(repeated.describe())
    print_scale_report(summarize(repeated.runs, _KEY_FIELDS), items)
    return 0


def print_scale_report(rows: list[SummaryRow], items: int) -> None:
    print(f"{CONNECTORS} connectors publish {items:,} items in all (one poll each, at "
          "once), then one consumer reads every shard; WAIT = replicas each commit waits for")
    print(f"{'topology':>9} | {'shards':>6} | {'WAIT':>4} | {'publish it/s':>24} | "
          f"{'consume ev/s':>24} | {'control B':>9} | {'B/item':>6}")
    for row in rows:
        print(f"{row.key['topology']:>9} | {row.key['shards']:>6} | {row.key['acks']:>4} | "
              f"{row.cell('publish_rate'):>24} | {row.cell('consume_rate'):>24} | "
              f"{row.spreads['control_bytes'].median:>9,.0f} | "
              f"{row.spreads['bytes_per_item'].median:>6,.0f}")
