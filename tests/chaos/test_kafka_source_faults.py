"""kafka-source end to end: ``connector-run`` (a real process) against a real
Kafka-API broker (Tansu) and Redis, killed with SIGKILL again and again while
records flow, and across a broker restart. Every record must be in the stream
exactly once: offsets are saved in the same fenced commit as the entries."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from framework.testing import RedisServer, TansuBroker
from tests.kafka_peer import create_topic, unique_topic
from tests.process import ConnectorProcess, write_config

pytestmark = pytest.mark.slow
STREAM = "raw-input-signals"
PARTITIONS = 3


@pytest.fixture(scope="module")
def kafka() -> Iterator[TansuBroker]:
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def durable_kafka() -> Iterator[TansuBroker]:
    """A broker whose log survives its restart (kept in a private S3 server)."""
    with TansuBroker(persistent=True) as broker:
        yield broker


def kafka_entry(name: str, bootstrap: str, topic: str) -> dict[str, Any]:
    return {"name": name, "type": "kafka-source", "pollIntervalMs": 1000,
            "requestTimeoutMs": 3000, "leaseTtlSeconds": 2,
            "providerConfig": {"brokers": [bootstrap], "topic": topic, "groupId": name}}


async def produce_steadily(bootstrap: str, topic: str, count: int, *, per_s: float
                           ) -> list[tuple[int, int]]:
    """``count`` records at about ``per_s`` a second, acks=all, round robin over the
    partitions; returns their (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=10_000, retry_backoff_ms=200)
    await producer.start()
    sent: list[tuple[int, int]] = []
    try:
        for i in range(count):
            meta = await producer.send_and_wait(topic, b'{"n": %d}' % i,
                                                partition=i % PARTITIONS)
            sent.append((meta.partition, meta.offset))
            if i % 20 == 19:
                await asyncio.sleep(20 / per_s)
    finally:
        await producer.stop()
    return sent


async def stream_ids(redis: Redis) -> list[str]:
    return [fields["item_id"] for _, fields in await redis.xrange(STREAM)]


async def wait_for_length(redis: Redis, length: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await redis.xlen(STREAM) >= length:
                return
            await asyncio.sleep(0.1)


def assert_exactly_once(ids: list[str], topic: str, sent: list[tuple[int, int]]) -> None:
    repeated = {item: n for item, n in Counter(ids).items() if n > 1}
    assert not repeated, f"appended more than once: {sorted(repeated)[:10]}"
    missing = {f"{topic}/{p}/{o}" for p, o in sent} - set(ids)
    assert not missing, f"never appended: {sorted(missing)[:10]}"


async def test_a_kill_9_storm_while_records_flow_loses_and_repeats_nothing(
    redis: Redis, redis_server: RedisServer, kafka: TansuBroker, tmp_path: Path,
) -> None:
    topic = unique_topic("storm")
    await create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = write_config(tmp_path / "connectors.json",
                          kafka_entry("storm", kafka.bootstrap, topic))
    producing = asyncio.create_task(produce_steadily(kafka.bootstrap, topic, 1200, per_s=40))
    rng = random.Random(16)
    kills = 0
    while not producing.done() or kills < 5:  # kills land while records flow
        run = ConnectorProcess("storm", redis_url=redis_server.url, config=config,
                               log=tmp_path / f"run-{kills}.log")
        try:
            await asyncio.to_thread(run.wait_for, "push_source_started", timeout_s=30)
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            run.signal(signal.SIGKILL)
            kills += 1
        finally:
            run.close()
    sent = await producing
    final = ConnectorProcess("storm", redis_url=redis_server.url, config=config,
                             log=tmp_path / "final.log")
    try:
        await wait_for_length(redis, len(sent), timeout_s=60)
        await asyncio.sleep(1.5)  # anything appended twice would show by now
    finally:
        final.signal(signal.SIGTERM)
        await asyncio.to_thread(final.wait, 30)
        final.close()

    assert_exactly_once(await stream_ids(redis), topic, sent)
    assert await redis.xlen(STREAM) == len(sent)


async def test_a_broker_restart_mid_run_loses_and_repeats_nothing(
    redis: Redis, redis_server: RedisServer, durable_kafka: TansuBroker, tmp_path: Path,
) -> None:
    kafka = durable_kafka
    topic = unique_topic("restart")
    await create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = write_config(tmp_path / "connectors.json",
                          kafka_entry("restart", kafka.bootstrap, topic))
    run = ConnectorProcess("restart", redis_url=redis_server.url, config=config,
                           log=tmp_path / "run.log")
    try:
        before = await produce_steadily(kafka.bootstrap, topic, 60, per_s=200)
        await wait_for_length(redis, 60, timeout_s=30)
        kafka.stop()
        await asyncio.sleep(2.0)  # the connector keeps running without its broker
        assert run.process.poll() is None
        kafka.start()
        after = await produce_steadily(kafka.bootstrap, topic, 60, per_s=200)
        await wait_for_length(redis, 120, timeout_s=60)
        await asyncio.sleep(1.0)
    finally:
        run.signal(signal.SIGTERM)
        await asyncio.to_thread(run.wait, 30)
        run.close()

    assert_exactly_once(await stream_ids(redis), topic, before + after)
    assert await redis.xlen(STREAM) == 120


async def test_a_frozen_broker_stalls_nothing_else_and_loses_nothing(
    redis: Redis, redis_server: RedisServer, kafka: TansuBroker, tmp_path: Path,
) -> None:
    topic = unique_topic("frozen")
    await create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = write_config(tmp_path / "connectors.json",
                          kafka_entry("frozen", kafka.bootstrap, topic))
    run = ConnectorProcess("frozen", redis_url=redis_server.url, config=config,
                           log=tmp_path / "run.log")
    try:
        before = await produce_steadily(kafka.bootstrap, topic, 60, per_s=200)
        await wait_for_length(redis, 60, timeout_s=30)
        windows_before = windows(run)
        os.kill(kafka.pid, signal.SIGSTOP)  # longer than requestTimeoutMs (3 s)
        try:
            await asyncio.sleep(5.0)
            assert run.process.poll() is None
            windows_during = windows(run) - windows_before
        finally:
            os.kill(kafka.pid, signal.SIGCONT)
        after = await produce_steadily(kafka.bootstrap, topic, 60, per_s=200)
        await wait_for_length(redis, 120, timeout_s=60)
        await asyncio.sleep(1.0)
    finally:
        run.signal(signal.SIGTERM)
        await asyncio.to_thread(run.wait, 30)
        run.close()

    assert windows_during >= 2  # its windows went on: nothing waits on the frozen peer
    assert not [e for e in run.events() if e.get("event") == "lease_lost"]
    assert_exactly_once(await stream_ids(redis), topic, before + after)
    assert await redis.xlen(STREAM) == 120


def windows(run: ConnectorProcess) -> int:
    return len([e for e in run.events() if e.get("event") == "poll_completed"])


async def test_a_standby_takes_over_from_a_killed_leader_exactly_once(
    redis: Redis, redis_server: RedisServer, kafka: TansuBroker, tmp_path: Path,
) -> None:
    topic = unique_topic("standby")
    await create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = write_config(tmp_path / "connectors.json",
                          kafka_entry("standby", kafka.bootstrap, topic))
    first = ConnectorProcess("standby", redis_url=redis_server.url, config=config,
                             log=tmp_path / "first.log")
    await asyncio.to_thread(first.wait_for, "push_source_started", timeout_s=30)
    second = ConnectorProcess("standby", redis_url=redis_server.url, config=config,
                              log=tmp_path / "second.log")
    try:
        await asyncio.to_thread(second.wait_for, "standby", timeout_s=30)
        producing = asyncio.create_task(produce_steadily(kafka.bootstrap, topic, 300,
                                                         per_s=60))
        await wait_for_length(redis, 60, timeout_s=30)
        first.signal(signal.SIGKILL)  # mid-flow; its lease runs out in 2 s
        await asyncio.to_thread(second.wait_for, "push_source_started", timeout_s=30)
        sent = await producing
        await wait_for_length(redis, len(sent), timeout_s=60)
        await asyncio.sleep(1.0)
    finally:
        first.close()
        second.signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
        second.close()

    # A standby holds no Kafka session: its consumer started once, after the lease.
    second_events = [e.get("event") for e in second.events()]
    assert second_events.count("push_source_started") == 1
    assert second_events.index("lease_acquired") < second_events.index("push_source_started")
    assert_exactly_once(await stream_ids(redis), topic, sent)
    assert await redis.xlen(STREAM) == len(sent)
