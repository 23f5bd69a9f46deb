"""``bench sources --source kafka``: a private Tansu broker holding ``events`` records
in 3 partitions, drained by the ``kafka-source`` connector (aiokafka consumer, push
connector, fenced append with the offsets) and by a bare aiokafka loop (getmany ->
one pipelined XADD per batch), each into an emptied stream on the same Redis. Both
times include connecting, assigning and seeking.

aiokafka's clients are mostly unannotated: they are held as ``Any`` here."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import TansuBroker
from providers.kafka import create_kafka_source_connector
from worker.bench.stats import Row

TOPIC = "bench"
PARTITIONS = 3
MAX_BATCH = 500  # the push connector's default batch
STREAM = "raw-input-signals"


def measure(params: Row) -> list[Row]:
    """One run: ``events`` records drained by each loop (one row, mode ``drain``)."""
    events = int(params["events"])
    with TansuBroker() as broker:
        rates = asyncio.run(_measure(broker.bootstrap, events, params["redis_url"]))
    return [{"mode": "drain", "events": events, **rates}]


async def _measure(bootstrap: str, events: int, redis_url: str) -> Row:
    await _load(bootstrap, events)
    redis = create_redis(redis_url)
    try:
        connector_s = await _connector_seconds(redis, bootstrap, events)
        bare_s = await _bare_loop_seconds(redis, bootstrap, events)
    finally:
        await redis.aclose()
    return {"rate": events / connector_s, "bare_rate": events / bare_s}


async def _load(bootstrap: str, events: int) -> None:
    admin: Any = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])  # type: ignore[no-untyped-call]
    finally:
        await admin.close()
    producer: Any = AIOKafkaProducer(  # type: ignore[no-untyped-call]
        bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(TOPIC, orjson.dumps({"n": i, "temp": 21.5}),
                                     key=b"sensor-%d" % (i % 50), partition=i % PARTITIONS)
                 for i in range(events)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _connector_seconds(redis: Redis, bootstrap: str, events: int) -> float:
    await redis.flushdb()
    config = ConnectorConfig(name="bench-kafka", type="kafka-source", poll_interval_ms=1000,
                             stream_max_len=10 * events,
                             provider_config={"brokers": [bootstrap], "topic": TOPIC})
    clock = SystemClock()
    lease = Lease(redis, config.name, ttl_s=300)
    assert await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock), clock=clock,
                               logger=get_logger(connector=config.name))
    connector = create_kafka_source_connector(config, context)
    started = time.perf_counter()
    try:
        while await redis.xlen(STREAM) < events:
            await connector.poll()
        return time.perf_counter() - started
    finally:
        await connector.aclose()


async def _bare_loop_seconds(redis: Redis, bootstrap: str, events: int) -> float:
    await redis.flushdb()
    started = time.perf_counter()
    consumer: Any = AIOKafkaConsumer(  # type: ignore[no-untyped-call]
        bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        appended = 0
        while appended < events:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=MAX_BATCH)
            async with redis.pipeline(transaction=False) as pipe:
                for records in fetched.values():
                    for record in records:
                        pipe.xadd(STREAM, {"item_id": f"{record.topic}/{record.partition}/"
                                           f"{record.offset}", "payload": record.value or b""})
                        appended += 1
                await pipe.execute()
        return time.perf_counter() - started
    finally:
        await consumer.stop()
