"""Private asyncua servers (each in its own process, ready in ~2 s: one per module
where the tests do not stop it) and helpers to change their values and to build
``opcua-source`` connectors on the test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from asyncua import Client, ua
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.core.errors import LeaseLostError
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing.opcua import OpcUaServer, node_id
from providers.opcua import create_opcua_connector

STREAM = "raw-input-signals"


@pytest.fixture(scope="module")
def opcua_server() -> Iterator[OpcUaServer]:
    with OpcUaServer() as server:
        yield server


async def write_values(server: OpcUaServer, values: dict[str, tuple[Any, ua.VariantType]], *,
                       status: ua.StatusCode | None = None) -> datetime:
    """Set test nodes (``{"Temperature": (21.5, Double)}``) with a source timestamp
    (returned) the way a device would."""
    stamp = datetime.now(UTC)
    async with Client(server.endpoint, timeout=10) as client:
        for name, (value, kind) in values.items():
            data = ua.DataValue(ua.Variant(value, kind), StatusCode=status or ua.StatusCode(),
                                SourceTimestamp=stamp)
            await client.get_node(node_id(name)).write_value(data)
    return stamp


async def opcua_connector(redis: Redis, server: OpcUaServer | str, *, name: str = "plant-ua",
                          timeout_ms: int = 5000, poll_interval_ms: int = 300,
                          **provider: Any) -> Any:
    endpoint = server if isinstance(server, str) else server.endpoint
    settings = {"endpoint": endpoint, "nodeIds": [node_id("Temperature")],
                "subscription": {"publishingIntervalMs": 50, "samplingIntervalMs": 20},
                **provider}
    if settings.get("mode") == "polling":
        settings.pop("subscription")
    config = ConnectorConfig(name=name, type="opcua-source", poll_interval_ms=poll_interval_ms,
                             request_timeout_ms=timeout_ms, provider_config=settings)
    await redis.delete(f"lease:{name}")  # the previous instance's lease has expired
    lease = Lease(redis, name, ttl_s=600)  # not renewed here: it outlives a slow test
    assert await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                               clock=SystemClock(), logger=get_logger(connector=name))
    return create_opcua_connector(config, context)


async def events(redis: Redis, stream: str = STREAM) -> list[dict[str, Any]]:
    return [orjson.loads(fields["payload"]) for _, fields in await redis.xrange(stream)]


async def poll_until(connector: Any, redis: Redis, count: int, timeout_s: float = 20.0,
                     stream: str = STREAM) -> None:
    """Poll (failed polls included: a server coming back) until ``count`` entries."""
    async with asyncio.timeout(timeout_s):
        while await redis.xlen(stream) < count:
            try:
                await connector.poll()
            except LeaseLostError:
                raise
            except Exception:  # the server is away: the next poll connects again
                await asyncio.sleep(0.1)
