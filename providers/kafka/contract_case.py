"""kafka-source's case for the provider contract: its config errors only (a broker
pushes records, there are no HTTP replies to record); tests/providers/kafka/ covers
its records, offsets and faults against a real Kafka-API broker."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = ("a Kafka broker, not an HTTP source: tests/providers/kafka/ and "
       "tests/chaos/test_kafka_source_faults.py cover it against a real broker")


class KafkaEvent(BaseModel):
    source: str
    value: Any
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="kafka-source", signal_model=KafkaEvent,
        provider_config=lambda _url: {"brokers": ["127.0.0.1:9092"], "topic": "orders",
                                      "groupId": "contract"},
        required_fields=["brokers"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
