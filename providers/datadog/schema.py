"""The Datadog event signal, normalized from one item of ``GET /api/v2/events``.

An item is ``{"id", "type": "event", "attributes": {"timestamp" (ISO 8601),
"message", "tags", "attributes": {...}}}``; the inner ``attributes`` hold the
category-specific fields (``title``, ``status``, ``priority``, ``service``,
``hostname``, ``source_type_name``, ``monitor_id``, ``monitor_groups``,
``aggregation_key``, ``evt``...). Every one of them may be absent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class DatadogEvent(BaseModel):
    """One event of the Events Explorer (a monitor alert or recovery, a deploy, a
    configuration change...). Optional fields are None when Datadog omits them."""

    model_config = ConfigDict(frozen=True)

    source: str = "datadog"
    id: str
    timestamp: str
    title: str | None = None
    message: str | None = None
    # failure, error, warning, info, success, user_update, recommendation, snapshot
    status: str | None = None
    priority: str | None = None
    service: str | None = None
    hostname: str | None = None
    sourceTypeName: str | None = None
    # Set on monitor alerts: which monitor and which of its groups fired.
    monitorId: int | None = None
    monitorGroups: list[str] = []
    aggregationKey: str | None = None
    tags: list[str] = []


def event_id(item: Any) -> str:
    if not isinstance(item, dict):
        raise ValueError(f"event is a {type(item).__name__}, not an object")
    identifier = item.get("id")
    if not isinstance(identifier, str) or not identifier:
        raise ValueError("event has no id")
    return identifier


def event_timestamp(item: dict[str, Any]) -> datetime:
    """``attributes.timestamp`` as an aware datetime (ValueError if absent or bad)."""
    value = (item.get("attributes") or {}).get("timestamp")
    if not isinstance(value, str):
        raise ValueError("event has no attributes.timestamp")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"event timestamp {value!r} has no time zone")
    return moment


def to_event(item: dict[str, Any]) -> DatadogEvent:
    outer = item.get("attributes")
    if not isinstance(outer, dict):
        raise ValueError("event has no attributes object")
    inner = outer.get("attributes")
    inner = inner if isinstance(inner, dict) else {}
    groups = inner.get("monitor_groups")
    tags = outer.get("tags")
    return DatadogEvent(
        id=event_id(item),
        timestamp=_iso_utc(event_timestamp(item)),
        title=inner.get("title") or inner.get("event_object"),
        message=outer.get("message"),
        status=inner.get("status"),
        priority=inner.get("priority"),
        service=inner.get("service"),
        hostname=inner.get("hostname"),
        sourceTypeName=inner.get("source_type_name"),
        monitorId=inner.get("monitor_id"),
        monitorGroups=groups if isinstance(groups, list) else [],
        aggregationKey=inner.get("aggregation_key"),
        tags=tags if isinstance(tags, list) else [],
    )


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
