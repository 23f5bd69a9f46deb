"""A push connector under ConnectorWorker on real Redis: windows follow each other
without waiting for the poll interval, and the source lets go when the lease is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.core.logs import get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    ConnectorRegistry,
    FleetConfig,
    PollingConnector,
    PrometheusMetrics,
    PushConnector,
    PushParts,
)
from tests.polling.test_push import Note, QueueBroker, payload_values, transform
from worker.connector import ConnectorWorker
from worker.exit_codes import ExitCode
from worker.runtime import Runtime


def make_worker(redis: Redis, broker: QueueBroker) -> ConnectorWorker:
    def factory(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
        parts = PushParts(source=broker, item_id=lambda n: f"queue/{n.offset}",
                          transformer=transform, raw=lambda n: n.body)
        return PushConnector[Note, Any](config=config, parts=parts, store=context.store,
                                        clock=context.clock, logger=context.logger)

    registry = ConnectorRegistry()
    registry.register_connector("QUEUE", factory)
    # The default interval (60 s) would make a poller wait a minute between polls.
    config = ConnectorConfig(name="pushed", type="QUEUE", lease_ttl_seconds=2)
    fleet = FleetConfig(connectors={"pushed": config}, source="test")
    runtime = Runtime(redis=redis, redis_url="redis://test", registry=registry,
                      load_config=lambda: fleet, clock=SystemClock(),
                      logger=get_logger(connector="pushed"), prometheus=CollectorRegistry(),
                      drain_timeout_s=5)
    return ConnectorWorker("pushed", runtime, PrometheusMetrics.create(runtime.prometheus))


async def eventually(predicate: Any, timeout_s: float = 20.0) -> None:
    """Polls ``predicate`` (an async check of Redis and the broker) until it holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.02)


async def test_messages_flow_window_after_window_and_stop_when_the_lease_is_lost(
    redis: Redis,
) -> None:
    broker = QueueBroker(redis)
    worker = make_worker(redis, broker)
    await worker.start()
    run = asyncio.create_task(worker.run())

    for value in range(3):  # each in a later window than the one before
        broker.publish(b'{"v": %d}' % value)
        await eventually(lambda n=value + 1: _length_is(redis, n))

    await redis.set("lease:pushed", "another-instance", px=60_000)
    await eventually(lambda: _stopped(broker, worker))
    broker.publish(b'{"v": 9}')
    await asyncio.sleep(1.0)  # a standby must not take it
    assert [n.body for n in broker.queue] == [b'{"v": 9}']
    assert await payload_values(redis) == [0, 1, 2]

    worker.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.OK


async def _length_is(redis: Redis, length: int) -> bool:
    return bool(await redis.xlen("raw-input-signals") == length)


async def _stopped(broker: QueueBroker, worker: ConnectorWorker) -> bool:
    return not worker.lease.held and broker.stops > 0
