"""ConnectorWorker in-process, on real Redis and a fake clock: the schedule."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig, FleetConfig
from framework.polling.metrics import PrometheusMetrics
from framework.polling.poller import (
    FetchResult,
    PollingConnector,
    SourceParts,
    UniversalPollingConnector,
)
from framework.polling.registry import ConnectorContext, ConnectorRegistry
from framework.polling.state import ConnectorState
from framework.testing import FakeClock
from worker.connector import ConnectorWorker
from worker.exit_codes import ExitCode
from worker.runtime import Runtime


class TimedSource:
    """Each fetch takes the next duration (on the fake clock) and records its start."""

    def __init__(self, clock: FakeClock, durations_s: list[float]) -> None:
        self.clock = clock
        self.durations_s = durations_s
        self.starts: list[float] = []

    async def fetch(self, _: Any, __: ConnectorState) -> FetchResult[dict[str, Any]]:
        self.starts.append(round(self.clock.monotonic(), 3))
        duration = self.durations_s[len(self.starts) - 1] if len(self.starts) <= len(
            self.durations_s) else 0.0
        await self.clock.sleep(duration)
        return FetchResult(items=[{"id": "a"}])


def make_worker(redis: Redis, clock: FakeClock, source: TimedSource) -> ConnectorWorker:
    def factory(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
        return UniversalPollingConnector[None, dict[str, Any], dict[str, Any]](
            config=config,
            parts=SourceParts(provider=None, fetcher=source.fetch,
                              item_id=lambda raw: raw["id"], transformer=dict),
            store=context.store, logger=context.logger,
        )

    registry = ConnectorRegistry()
    registry.register_connector("TIMED", factory)
    config = ConnectorConfig(name="timed", type="TIMED", poll_interval_ms=1000,
                             lease_ttl_seconds=30)
    runtime = make_runtime(
        redis, clock, registry, FleetConfig(connectors={"timed": config}, source="test"),
        logger_name="timed")
    return ConnectorWorker("timed", runtime, PrometheusMetrics.create(runtime.prometheus))


def make_runtime(redis: Redis, clock: FakeClock, registry: ConnectorRegistry,
                 fleet: FleetConfig, *, logger_name: str | None = None) -> Runtime:
    logger = get_logger(connector=logger_name) if logger_name else get_logger()
    return Runtime(redis=redis, redis_url="redis://test", registry=registry,
                   load_config=lambda: fleet, clock=clock, logger=logger,
                   prometheus=CollectorRegistry(), drain_timeout_s=5)


async def test_polls_start_at_a_fixed_rate_and_skip_slots_a_slow_poll_missed(
    redis: Redis,
) -> None:
    clock = FakeClock()
    # The third poll (at t=2) takes 2.5 s: the slots at 3 and 4 are skipped, not bunched.
    source = TimedSource(clock, [0.25, 0.5, 2.5, 0.125, 0.125])
    worker = make_worker(redis, clock, source)
    await worker.start()
    run = asyncio.create_task(worker.run())

    while len(source.starts) < 6:
        await clock.until_sleeping(2)  # the lease keeper and the poll loop (or a fetch)
        await clock.advance(0.125)  # a power of two: exact sums

    worker.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.OK
    assert source.starts == [0.0, 1.0, 2.0, 5.0, 6.0, 7.0]
    assert await redis.get("lease:timed") is None


async def test_health_reports_stale_polls_while_active(redis: Redis) -> None:
    clock = FakeClock()
    source = TimedSource(clock, [0.0])
    worker = make_worker(redis, clock, source)
    await worker.start()
    run = asyncio.create_task(worker.run())
    while not source.starts:
        await clock.until_sleeping(2)
        await clock.advance(0.125)  # a power of two: exact sums
    await clock.until_sleeping(2)

    healthy, details = worker.health()
    assert healthy and details["role"] == "active"

    worker.request_stop()
    await asyncio.wait_for(run, 10)
    worker.last_success_s = clock.time() - 3600
    worker.lease.held = True  # as if it still held the lease, an hour later
    healthy, details = worker.health()
    assert not healthy and "no successful poll" in details["reason"]


async def test_late_starts_do_not_accumulate_into_drift(redis: Redis) -> None:
    clock = FakeClock()
    source = TimedSource(clock, [])
    worker = make_worker(redis, clock, source)
    await worker.start()
    run = asyncio.create_task(worker.run())

    # Time moves in coarse steps, so each poll wakes a little after its slot.
    while len(source.starts) < 6:
        await clock.until_sleeping(2)
        await clock.advance(0.375)

    worker.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.OK
    # Slots 0, 1, 2, 3, 4, 5: each start is the first tick at or after its slot.
    assert source.starts == [0.0, 1.125, 2.25, 3.0, 4.125, 5.25]


async def test_in_process_fleet_spreads_first_polls_over_the_interval(redis: Redis) -> None:
    from worker.fleet import InProcessFleet

    clock = FakeClock()
    starts: dict[str, list[float]] = {}

    def factory(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
        async def fetch(_: Any, __: ConnectorState) -> FetchResult[dict[str, Any]]:
            starts.setdefault(config.name, []).append(clock.monotonic())
            return FetchResult(items=[])

        return UniversalPollingConnector[None, dict[str, Any], dict[str, Any]](
            config=config,
            parts=SourceParts(provider=None, fetcher=fetch, item_id=lambda raw: raw["id"],
                              transformer=dict),
            store=context.store, logger=context.logger,
        )

    registry = ConnectorRegistry()
    registry.register_connector("TIMED", factory)
    names = ["c0", "c1", "c2", "c3"]
    fleet_config = FleetConfig(connectors={
        n: ConnectorConfig(name=n, type="TIMED", poll_interval_ms=1000) for n in names
    }, source="test")
    runtime = make_runtime(redis, clock, registry, fleet_config)
    fleet = InProcessFleet(runtime, PrometheusMetrics.create(runtime.prometheus))
    await fleet.start()
    run = asyncio.create_task(fleet.run())

    while sum(len(s) for s in starts.values()) < 8:
        await clock.until_sleeping(4)  # each worker's loop (leases: the renewals thread)
        await clock.advance(0.125)

    fleet.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.OK
    assert {n: s[:2] for n, s in starts.items()} == {
        "c0": [0.0, 1.0], "c1": [0.25, 1.25], "c2": [0.5, 1.5], "c3": [0.75, 1.75]}
