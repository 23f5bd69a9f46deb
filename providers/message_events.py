"""A broker message's JSON body as a source event, the same for every broker
(MQTT, AMQP): a JSON object with a ``value`` gives ``value`` and, when present,
``unit``, ``timestamp``, ``nodeId`` and ``metadata``; any other JSON document is
the ``value`` itself. ``nodeId`` defaults to where the message was published (an
MQTT topic, an AMQP routing key). A body that is not JSON, or is larger than the
limit, raises ``ValueError`` naming ``where``: the push connector keeps such a
message raw in the connector's rejected stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from framework import polling


@dataclass(frozen=True, slots=True)
class JsonBodies:
    """Events of one connector: its ``source`` name and its body size limit."""

    source: str
    max_bytes: int

    def document(self, body: bytes, where: str) -> Any:
        if len(body) > self.max_bytes:
            raise ValueError(f"{where}: body of {len(body)} bytes is over maxMessageBytes "
                             f"({self.max_bytes})")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}: body is not JSON: {exc}") from None

    def event(self, body: bytes, *, where: str, node_id: str,
              metadata: dict[str, Any]) -> dict[str, Any]:
        document = self.document(body, where)
        if not (isinstance(document, dict) and "value" in document):
            return polling.source_event(source=self.source, value=document, node_id=node_id,
                                        metadata=metadata)
        extra = document.get("metadata")
        if extra is not None and not isinstance(extra, dict):
            raise ValueError(f"{where}: metadata must be an object")
        return polling.source_event(
            source=self.source, value=document["value"],
            node_id=_text(document, "nodeId", where) or node_id,
            unit=_text(document, "unit", where),
            timestamp=_text(document, "timestamp", where),
            metadata={**(extra or {}), **metadata})

    def field(self, body: bytes, name: str) -> str | None:
        """A top-level scalar field of the body (a publisher's message id), if any."""
        try:
            document = self.document(body, "")
        except ValueError:
            return None  # the message is rejected anyway
        value = document.get(name) if isinstance(document, dict) else None
        return None if value is None or isinstance(value, dict | list) else str(value)


def _text(document: dict[str, Any], field: str, where: str) -> str | None:
    value = document.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: {field} must be a string")
    return value
