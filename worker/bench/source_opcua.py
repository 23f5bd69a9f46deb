"""``bench sources --source opcua``: data-change notifications/s from a private asyncua
server into the stream, through ``opcua-source`` in subscription mode (lease, push
connector, fenced append with dedupe keys) against a bare asyncua loop doing the same
work without the framework (the same subscription; take what arrived, one pipelined
XADD per batch).

The server (its own process) sets ``NODES`` Int64 nodes to the next count every
``TICK_MS``, as fast as it can: both readers subscribe to all of them with the same
publishing interval, sampling interval and queue size, and each is timed from its
first appended notification over the next ``events``. The server offers at most
``NODES * 1000 / TICK_MS`` changes/s; when a row's two rates are close, the server
was the limit, not the reader (the docs say so next to the figures).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from asyncua import Client
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import OpcUaServer
from framework.testing import opcua_node_id as node_id
from providers.opcua import create_opcua_connector
from worker.bench.stats import Row

STREAM = "raw-input-signals"
NODES, TICK_MS = 100, 10
PUBLISHING_MS, QUEUE = 50, 100
TIMEOUT_S = 120.0


def measure(params: Row) -> list[Row]:
    """One run: ``rate`` (the connector) and ``bare_rate`` (notifications/s) over
    ``events`` notifications into the stream of the Redis at ``redis_url``."""
    events = int(params["events"])
    return [{"mode": "subscribe", "events": events,
             **asyncio.run(_measure(events, params["redis_url"]))}]


async def _measure(events: int, redis_url: str) -> Row:
    with OpcUaServer(tick_ms=TICK_MS, tick_nodes=NODES) as server:
        redis = create_redis(redis_url)
        try:
            await redis.delete(STREAM)
            connector_rate = await _connector(redis, server, events)
            await redis.delete(STREAM)
            bare_rate = await _bare(redis, server, events)
        finally:
            await redis.aclose()
    return {"rate": connector_rate, "bare_rate": bare_rate}


def _nodes() -> list[str]:
    return [node_id(f"Tick.{index}") for index in range(NODES)]


class _Clock:
    """Started at the first appended notification; done ``events`` later."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.first: tuple[float, int] | None = None
        self.deadline = time.monotonic() + TIMEOUT_S

    def rate(self, appended: int) -> float | None:
        now = time.perf_counter()
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"bench opcua: not {self.events} notifications in {TIMEOUT_S} s")
        if self.first is None:
            if appended:
                self.first = (now, appended)
            return None
        started, base = self.first
        if appended - base < self.events:
            return None
        return (appended - base) / (now - started)


async def _connector(redis: Redis, server: OpcUaServer, events: int) -> float:
    config = ConnectorConfig(
        name="bench-opcua", type="opcua-source", poll_interval_ms=100, request_timeout_ms=10_000,
        provider_config={"endpoint": server.endpoint, "nodeIds": _nodes(),
                         "subscription": {"publishingIntervalMs": PUBLISHING_MS,
                                          "samplingIntervalMs": 0, "queueSize": QUEUE}})
    name = config.name
    await redis.delete(f"lease:{name}", f"connector:state:{name}",
                       f"connector:state:{name}:seen", f"connector:state:{name}:rejected")
    lease = Lease(redis, name, ttl_s=60)
    await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                               clock=SystemClock(), logger=get_logger(connector=name))
    connector: Any = create_opcua_connector(config, context)
    clock = _Clock(events)
    try:
        while (rate := clock.rate(await redis.xlen(STREAM))) is None:
            await connector.poll()
    finally:
        await connector.aclose()
    return rate


class _Collect:
    def __init__(self) -> None:
        self.arrived: list[tuple[str, Any, Any]] = []

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        stamp = data.monitored_item.Value.SourceTimestamp
        self.arrived.append((node.nodeid.to_string(), value, stamp))


async def _bare(redis: Redis, server: OpcUaServer, events: int) -> float:
    collect = _Collect()
    clock = _Clock(events)
    appended = 0
    async with Client(server.endpoint, timeout=10) as client:
        subscription = await client.create_subscription(PUBLISHING_MS, collect)
        await subscription.subscribe_data_change([client.get_node(n) for n in _nodes()],
                                                 queuesize=QUEUE, sampling_interval=0)
        while (rate := clock.rate(appended)) is None:
            batch, collect.arrived = collect.arrived, []
            if not batch:
                await asyncio.sleep(0.005)
                continue
            async with redis.pipeline(transaction=False) as pipe:
                for node, value, stamp in batch:
                    pipe.xadd(STREAM, {"payload": orjson.dumps(
                        {"nodeId": node, "value": value, "timestamp": stamp})})
                await pipe.execute()
            appended += len(batch)
    return rate
