"""Talking to the test's Kafka broker (Tansu) as a producer and an admin would."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, topic: str, partitions: int, **options: Any) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                                **options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: Iterable[bytes], *,
                  partitions: int = 1, keys: bool = True, **options: Any
                  ) -> list[tuple[int, int]]:
    """Sends each value (round robin over ``partitions``, key ``k<i>``), one at a time
    (Tansu 0.6 reports a partition's end as the last *batch* + 1, which a ``latest``
    start would land on); returns the (partition, offset) of each, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=10_000, **options)
    await producer.start()
    try:
        metadata = [await producer.send_and_wait(
            topic, value, key=f"k{i}".encode() if keys else None, partition=i % partitions)
            for i, value in enumerate(values)]
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]
