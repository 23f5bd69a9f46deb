"""Consumer metrics: the event_source_* series (by source) and the outcome counters."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.delivery import Delivery
from framework.consuming.metrics import ConsumerMetrics, entry_time_ms, source_of
from framework.core.clock import SystemClock
from framework.core.errors import DeadLetterError
from framework.core.logs import get_logger
from tests.consuming.test_consumer import GROUP, STREAM, Recorder, until


async def test_received_lag_and_outcomes_are_counted(redis: Redis) -> None:
    async def refuse_odd(delivery: Delivery) -> None:
        if int(delivery.fields["item_id"]) % 2:
            raise DeadLetterError("odd")

    for i in range(4):
        await redis.xadd(STREAM, {"connector": "weather-noaa", "type": "NOAA_WEATHER",
                                  "item_id": str(i)})
    await redis.xadd(STREAM, {"source": "sensor-7", "item_id": "10"})
    registry = CollectorRegistry()
    recorder = Recorder(refuse_odd)
    consumer = Consumer(redis, recorder, ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="c1", start_id="0", block_ms=50),
        clock=SystemClock(), logger=get_logger(), metrics=ConsumerMetrics.create(registry))
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(recorder.calls) == 5)
        await until(lambda: _sample(registry, "consumer_entries_total", outcome="acked") == 3)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=5)

    assert _sample(registry, "event_source_received_total", source_id="weather-noaa",
                   connector="NOAA_WEATHER") == 4
    assert _sample(registry, "event_source_received_total", source_id="sensor-7",
                   connector="") == 1
    assert _sample(registry, "consumer_entries_total", outcome="dead_lettered") == 2
    lag = _sample(registry, "event_source_lag_ms", source_id="weather-noaa")
    assert lag is not None and lag >= 0
    assert _sample(registry, "consumer_in_flight", group=GROUP) == 0


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return None


def test_source_of_names_connector_entries_events_and_others() -> None:
    assert source_of("s", {"connector": "noaa", "type": "NOAA_WEATHER"}) == (
        "noaa", "NOAA_WEATHER")
    assert source_of("s", {"source": "sensor-7"}) == ("sensor-7", "")
    assert source_of("s", {"event": "{}"}) == ("s", "")
    assert entry_time_ms("1700000000123-4") == 1700000000123


async def test_heartbeats_racing_acknowledgements_report_nothing_lost(redis: Redis) -> None:
    async def quick(_: Delivery) -> None:
        await asyncio.sleep(0.001)

    async with redis.pipeline(transaction=False) as pipe:
        for i in range(600):
            pipe.xadd(STREAM, {"n": str(i)})
        await pipe.execute()
    registry = CollectorRegistry()
    recorder = Recorder(quick)
    # A heartbeat every 10 ms: many of them run while acknowledgements are on their way.
    consumer = Consumer(redis, recorder, ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="c1", start_id="0", block_ms=50,
        claim_idle_ms=30, max_in_flight=16), clock=SystemClock(), logger=get_logger(),
        metrics=ConsumerMetrics.create(registry))
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: _sample(registry, "consumer_entries_total", outcome="acked") == 600)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=5)
    assert _sample(registry, "consumer_entries_total", outcome="lost") is None
    assert len(recorder.calls) == 600
