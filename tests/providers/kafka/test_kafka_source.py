"""kafka-source against a real Kafka-API broker (Tansu) and a real Redis: records
appended exactly once with each partition's next offset saved in the same commit."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from framework.core import PermanentSourceError, SystemClock, TransientSourceError
from framework.core.errors import LeaseLostError
from framework.core.logs import get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    Lease,
    PollSummary,
    PushConnector,
    StateStore,
)
from framework.testing import RedisServer, TansuBroker, free_port
from providers.kafka import create_kafka_source_connector
from tests.kafka_peer import create_topic, produce, unique_topic

STREAM = "raw-input-signals"


async def kafka_connector(redis: Redis, name: str, **provider: Any) -> PushConnector[Any, Any]:
    config = ConnectorConfig(name=name, type="kafka-source", poll_interval_ms=300,
                             request_timeout_ms=5000, provider_config=provider)
    await redis.delete(f"lease:{name}")  # a previous instance's lease has expired
    lease = Lease(redis, name, ttl_s=30)
    assert await lease.try_acquire()
    clock = SystemClock()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock), clock=clock,
                               logger=get_logger(connector=name))
    connector = create_kafka_source_connector(config, context)
    assert isinstance(connector, PushConnector)
    return connector


async def poll_until(connector: PushConnector[Any, Any], redis: Redis, length: int,
                     *, polls: int = 30) -> PollSummary:
    total = PollSummary(pages=0)
    for _ in range(polls):
        total += await connector.poll()
        if await redis.xlen(STREAM) >= length:
            return total
    return total


async def entries(redis: Redis) -> list[dict[str, Any]]:
    return [{**fields, "payload": orjson.loads(fields["payload"])}
            for _, fields in await redis.xrange(STREAM)]


async def cursors(redis: Redis, name: str) -> dict[str, str]:
    raw = await redis.hget(f"connector:state:{name}", "cursors")
    return orjson.loads(raw) if raw else {}


async def test_records_of_every_partition_are_appended_once_with_their_offsets(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 3)
    sent = await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(30)],
                         partitions=3)
    connector = await kafka_connector(redis, "orders", brokers=[kafka.bootstrap], topic=topic)
    try:
        summary = await poll_until(connector, redis, 30)
    finally:
        await connector.aclose()

    assert summary.published == 30
    got = await entries(redis)
    assert sorted(e["payload"]["value"]["v"] for e in got) == list(range(30))
    assert sorted(e["item_id"] for e in got) == sorted(f"{topic}/{p}/{o}" for p, o in sent)
    assert await cursors(redis, "orders") == {f"{topic}:{p}": "10" for p in range(3)}
    first = next(e for e in got if e["item_id"] == f"{topic}/0/0")
    assert (first["connector"], first["type"], first["version"]) == ("orders", "kafka-source", "1")
    event = first["payload"]
    assert (event["source"], event["nodeId"]) == ("kafka", "k0")
    assert event["metadata"] == {"topic": topic, "partition": 0, "offset": 0, "key": "k0"}
    assert event["timestamp"].endswith("+00:00")


async def test_a_new_instance_resumes_at_the_saved_offsets_without_loss_or_repeat(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(10)], partitions=2)
    first = await kafka_connector(redis, "resume", brokers=[kafka.bootstrap], topic=topic)
    await poll_until(first, redis, 10)
    await first.aclose()
    await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(10, 16)],
                  partitions=2)

    second = await kafka_connector(redis, "resume", brokers=[kafka.bootstrap], topic=topic)
    try:
        await poll_until(second, redis, 16)
        await second.poll()  # nothing more comes
    finally:
        await second.aclose()

    values = [e["payload"]["value"]["v"] for e in await entries(redis)]
    assert sorted(values) == list(range(16))
    assert await cursors(redis, "resume") == {f"{topic}:0": "8", f"{topic}:1": "8"}


async def test_latest_skips_what_was_there_and_saves_the_start_before_any_record(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(4)], partitions=2)
    connector = await kafka_connector(redis, "tail", brokers=[kafka.bootstrap], topic=topic,
                                      startFrom="latest")
    await connector.poll()
    assert await cursors(redis, "tail") == {f"{topic}:0": "2", f"{topic}:1": "2"}
    await connector.aclose()  # as if it crashed before any record came
    await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(4, 8)], partitions=2)

    again = await kafka_connector(redis, "tail", brokers=[kafka.bootstrap], topic=topic,
                                  startFrom="latest")
    try:
        await poll_until(again, redis, 4)
    finally:
        await again.aclose()

    assert sorted(e["payload"]["value"]["v"] for e in await entries(redis)) == [4, 5, 6, 7]


async def test_a_malformed_record_is_kept_raw_and_the_others_flow(
    redis: Redis, redis_server: RedisServer, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [b'{"v": 1}', b"\xff{not json", b'{"v": 3}'])
    connector = await kafka_connector(redis, "mixed", brokers=[kafka.bootstrap], topic=topic)
    try:
        summary = await poll_until(connector, redis, 2)
        summary += await connector.poll()  # it is not read again
    finally:
        await connector.aclose()

    assert (summary.published, summary.failed) == (2, 1)
    assert [e["payload"]["value"]["v"] for e in await entries(redis)] == [1, 3]
    async with Redis.from_url(redis_server.url) as raw:
        [(_, rejected)] = await raw.xrange("connector:state:mixed:rejected")
    assert rejected[b"item_id"] == f"{topic}/0/1".encode()
    assert rejected[b"raw"] == b"\xff{not json"
    assert await cursors(redis, "mixed") == {f"{topic}:0": "3"}


async def test_disjoint_partition_lists_split_a_topic_between_two_connectors(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 3)
    await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(12)], partitions=3)
    low = await kafka_connector(redis, "low", brokers=[kafka.bootstrap], topic=topic,
                                partitions=[0])
    high = await kafka_connector(redis, "high", brokers=[kafka.bootstrap], topic=topic,
                                 partitions="1,2")
    try:
        await poll_until(low, redis, 4)
        await poll_until(high, redis, 12)
    finally:
        await low.aclose()
        await high.aclose()

    got = await entries(redis)
    by = {name: {e["payload"]["metadata"]["partition"] for e in got if e["connector"] == name}
          for name in ("low", "high")}
    assert by == {"low": {0}, "high": {1, 2}}
    assert sorted(e["payload"]["value"]["v"] for e in got) == list(range(12))
    assert set(await cursors(redis, "high")) == {f"{topic}:1", f"{topic}:2"}


async def test_a_batch_whose_commit_fails_is_read_again_from_the_saved_offsets(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 1)
    connector = await kafka_connector(redis, "fenced", brokers=[kafka.bootstrap], topic=topic)
    try:
        await connector.poll()  # the start's positions are saved
        await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(3)])
        token = await redis.get("lease:fenced")
        await redis.set("lease:fenced", "someone-else")
        with pytest.raises(LeaseLostError):
            await poll_until(connector, redis, 3)
        assert await redis.xlen(STREAM) == 0
        await redis.set("lease:fenced", token)
        await poll_until(connector, redis, 3)
        await connector.poll()
    finally:
        await connector.aclose()

    assert [e["payload"]["value"]["v"] for e in await entries(redis)] == [0, 1, 2]


async def test_offsets_reach_the_group_after_the_append_for_lag_tooling(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [b'{"v": %d}' % i for i in range(5)])
    group = unique_topic("group")
    connector = await kafka_connector(redis, "lagged", brokers=[kafka.bootstrap], topic=topic,
                                      groupId=group)
    try:
        await poll_until(connector, redis, 5)
    finally:
        await connector.aclose()

    reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=group)
    await reader.start()
    try:
        assert await reader.committed(TopicPartition(topic, 0)) == 5
    finally:
        await reader.stop()


async def test_a_missing_topic_and_an_absent_broker_fail_the_window_with_their_names(
    redis: Redis, kafka: TansuBroker,
) -> None:
    missing = await kafka_connector(redis, "nowhere", brokers=[kafka.bootstrap],
                                    topic="no-such-topic-here")
    with pytest.raises(TransientSourceError, match="no-such-topic-here"):
        await missing.poll()
    await missing.aclose()

    dead = f"127.0.0.1:{free_port()}"
    absent = await kafka_connector(redis, "absent", brokers=[dead], topic="t")
    with pytest.raises(TransientSourceError, match=dead) as failure:
        await absent.poll()
    assert failure.value.retry_after_s is not None and failure.value.retry_after_s > 0
    await absent.aclose()


async def test_event_values_keep_their_own_fields_and_bad_ones_are_rejected(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 1)
    good = {"source": "plc-7", "value": 21.5, "unit": "C", "nodeId": "tank-1",
            "timestamp": "2026-12-03T10:00:00+00:00", "metadata": {"line": 2}}
    await produce(kafka.bootstrap, topic, [orjson.dumps(good), b'{"value": 1}', b"[1]"],
                  keys=False)
    connector = await kafka_connector(redis, "events", brokers=[kafka.bootstrap], topic=topic,
                                      valueFormat="event")
    try:
        summary = await poll_until(connector, redis, 1)
    finally:
        await connector.aclose()

    assert (summary.published, summary.failed) == (1, 2)
    [entry] = await entries(redis)
    event = entry["payload"]
    assert {k: event[k] for k in ("source", "value", "unit", "nodeId", "timestamp")} == {
        k: good[k] for k in ("source", "value", "unit", "nodeId", "timestamp")}
    assert event["metadata"]["line"] == 2
    assert event["metadata"]["kafka"]["offset"] == 0


async def test_a_record_over_max_message_bytes_is_rejected_and_the_next_flows(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 1)
    big = orjson.dumps({"v": "x" * 300})
    await produce(kafka.bootstrap, topic, [big, b'{"v": 2}'])
    connector = await kafka_connector(redis, "bounded", brokers=[kafka.bootstrap], topic=topic,
                                      maxMessageBytes=100)
    try:
        summary = await poll_until(connector, redis, 1)
    finally:
        await connector.aclose()

    assert (summary.published, summary.failed) == (1, 1)
    [(_, rejected)] = await redis.xrange("connector:state:bounded:rejected")
    assert "over maxMessageBytes (100)" in rejected["error"]
    assert [e["payload"]["value"]["v"] for e in await entries(redis)] == [2]


async def test_a_partition_the_topic_lacks_fails_the_start_naming_both(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic()
    await create_topic(kafka.bootstrap, topic, 2)
    connector = await kafka_connector(redis, "wrongpart", brokers=[kafka.bootstrap],
                                      topic=topic, partitions=[1, 5])
    with pytest.raises(PermanentSourceError, match=rf"topic '{topic}' has no partition \[5\] "
                                                   r"\(it has \[0, 1\]\)"):
        await connector.poll()
    await connector.aclose()


async def test_a_peer_that_answers_junk_fails_the_start_and_appends_nothing(
    redis: Redis,
) -> None:
    async def junk(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\nnot kafka at all")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(junk, "127.0.0.1", 0)
    wrong = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    connector = await kafka_connector(redis, "wrongpeer", brokers=[wrong], topic="t")
    try:
        with pytest.raises(TransientSourceError, match=f"start on {wrong} failed"):
            await connector.poll()
    finally:
        await connector.aclose()
        server.close()
    assert await redis.xlen(STREAM) == 0


async def test_credentials_the_broker_refuses_fail_the_start_saying_so(redis: Redis) -> None:
    # Tansu 0.6 cannot keep users before authentication is on, so every login fails
    # here: what is tested is how a refused SCRAM login is reported.
    with TansuBroker(extra_args=("--authentication",)) as guarded:
        connector = await kafka_connector(
            redis, "refused", brokers=[guarded.bootstrap], topic="t",
            securityProtocol="SASL_PLAINTEXT",
            sasl={"mechanism": "SCRAM-SHA-512", "username": "fleet", "password": "wrong-pass"})
        try:
            with pytest.raises(TransientSourceError) as failed:
                await connector.poll()
        finally:
            await connector.aclose()
    message = str(failed.value)
    assert "SASL authentication of user 'fleet' failed" in message
    assert "wrong-pass" not in message
    assert await redis.xlen(STREAM) == 0
