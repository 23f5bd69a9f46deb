"""The event a source publishes for one reading or message:
``{source, value, unit?, timestamp, nodeId, metadata?}``, the payload that the
consumers' contract (``EventPayloadV1``) reads. Built here, on the polling side,
so that every source spells it the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def source_event(
    *,
    source: str,
    value: Any,
    node_id: str,
    timestamp: datetime | str | None = None,
    unit: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload of one event. ``timestamp``: when the source says it happened (a
    datetime, or an ISO-8601 string kept as given), else now; a naive datetime is
    taken as UTC. Raises ``ValueError`` when ``source`` or ``node_id`` is empty."""
    if not source:
        raise ValueError("an event needs a source")
    if not node_id:
        raise ValueError("an event needs a nodeId")
    event: dict[str, Any] = {"source": source, "value": value, "nodeId": node_id,
                             "timestamp": _iso(timestamp)}
    if unit is not None:
        event["unit"] = unit
    if metadata:
        event["metadata"] = metadata
    return event


def _iso(timestamp: datetime | str | None) -> str:
    if isinstance(timestamp, str):
        return timestamp
    moment = timestamp or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()
