"""A Kafka record as the project's source event, and the names that identify it.

The event's ``metadata`` carries where the record came from (topic, partition,
offset, key, headers), so that a consumer can trace any event back to its record.
A record that cannot be an event (not JSON, over ``maxMessageBytes``, an ``event``
value without a nodeId) raises ValueError, and the push connector keeps it raw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

# Through the package: ``framework.polling.source_event`` is also a module's name, which
# the import contracts would read as importing that (internal) module.
from framework import polling

Record = ConsumerRecord[bytes, bytes]


def position_key(tp: TopicPartition) -> str:
    """``orders:0``: the name of a partition's position in the saved cursors."""
    return f"{tp.topic}:{tp.partition}"


def parse_position_key(key: str) -> TopicPartition | None:
    """The partition of ``orders:0``, None when the key is not one (topics have no ':')."""
    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition)) if topic and partition.isdigit() else None


def record_item_id(record: Record) -> str:
    """``orders/0/42``: a record's identity in Kafka (topic, partition, offset)."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def record_raw(record: Record) -> bytes:
    return record.value or b""


@dataclass(frozen=True)
class RecordEvents:
    """Makes events of records as providerConfig says (``valueFormat``, ``source``)."""

    value_format: str
    source: str
    max_message_bytes: int

    def __call__(self, record: Record) -> dict[str, Any]:
        raw = record.value or b""
        if len(raw) > self.max_message_bytes:
            raise ValueError(f"the record's value is {len(raw)} bytes, over maxMessageBytes "
                             f"({self.max_message_bytes})")
        metadata = _metadata(record)
        if self.value_format == "event":
            return _given_event(raw, metadata, self.source)
        value: Any = raw.decode("utf-8") if self.value_format == "text" else orjson.loads(raw)
        key = metadata.get("key")
        return polling.source_event(source=self.source, value=value,
                            node_id=key or f"{record.topic}/{record.partition}",
                            timestamp=_timestamp(record), metadata=metadata)


def _given_event(raw: bytes, metadata: dict[str, Any], default_source: str) -> dict[str, Any]:
    document = orjson.loads(raw)
    if not isinstance(document, dict):
        raise ValueError(f"valueFormat event: expected a JSON object, got "
                         f"{type(document).__name__}")
    if "value" not in document:
        raise ValueError("valueFormat event: the object has no 'value'")
    given = document.get("metadata")
    if given is not None and not isinstance(given, dict):
        raise ValueError("valueFormat event: 'metadata' must be an object")
    node_id = document.get("nodeId")
    if not isinstance(node_id, str):
        raise ValueError("valueFormat event: 'nodeId' must be a non-empty string")
    return polling.source_event(
        source=str(document.get("source") or default_source), value=document["value"],
        node_id=node_id, timestamp=_string_or_none(document.get("timestamp")),
        unit=_string_or_none(document.get("unit")), metadata={**(given or {}), "kafka": metadata})


def _string_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _timestamp(record: Record) -> datetime | None:
    if record.timestamp is None or record.timestamp < 0:
        return None
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def _metadata(record: Record) -> dict[str, Any]:
    metadata: dict[str, Any] = {"topic": record.topic, "partition": record.partition,
                                "offset": record.offset}
    if record.key is not None:
        metadata["key"] = record.key.decode("utf-8", errors="replace")
    if record.headers:
        metadata["headers"] = {name: (value or b"").decode("utf-8", errors="replace")
                               for name, value in record.headers}
    return metadata
