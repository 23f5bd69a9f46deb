"""Event contracts: what a stream entry may carry, and its normalized view.

Three shapes of entry are accepted:

* a **base event** (``base-event/1``): field ``event`` = JSON of :class:`BaseEventV1`
  (``event_id``, ``type``, ``source``, ``timestamp``, ``priority``,
  ``correlation_id``, ``payload``);
* an **event payload** (``event-payload/1``, a sensor reading): field ``event`` = JSON of
  :class:`EventPayloadV1` (``source``, ``value``, ``unit``, ``timestamp``,
  ``nodeId``, ``metadata``);
* a **polling connector entry** (written by ``framework/polling/lua/commit.lua``): fields
  ``connector``, ``type``, ``item_id``, ``version``, ``payload`` (JSON).

An ``event`` entry may name its contract in the field ``schema``
(``base-event/1``, ``event-payload/1``); without it the contract is inferred
from the keys (``payload`` → base event, ``nodeId`` → event payload). The models
are strict (unknown fields are errors). A v2 is a new model registered in
``CONTRACTS`` under ``("base-event", 2)``; producers opt in by writing
``schema: base-event/2``, and entries without ``schema`` keep meaning v1.

:func:`parse_event` turns a :class:`~framework.consuming.delivery.Delivery` into an
:class:`InboundEvent`, or raises :class:`~framework.core.errors.InvalidEventError`
(a dead letter) naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framework.consuming.delivery import Delivery
from framework.core.errors import InvalidEventError
from framework.core.keys import REPLAY_OF_FIELD


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseEventV1(_Contract):
    """An event of any producer: its type, source and payload. ``event_id`` defaults
    to the stream entry id (not a random one), so a redelivered entry keeps its identity."""

    event_id: str | None = None
    type: str = Field(min_length=1)
    source: str = Field(min_length=1)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    priority: Priority = Priority.NORMAL
    correlation_id: str | None = None
    payload: dict[str, Any]


class EventPayloadV1(_Contract):
    """One reading of a source (a sensor, a node), as the sensor gateways send it."""

    source: str = Field(min_length=1)
    value: Any
    unit: str | None = None
    timestamp: datetime
    nodeId: str = Field(min_length=1)  # camelCase: its name on the wire
    metadata: dict[str, Any] | None = None


BaseEvent = BaseEventV1
EventPayload = EventPayloadV1

CONTRACTS: dict[tuple[str, int], type[_Contract]] = {
    ("base-event", 1): BaseEventV1,
    ("event-payload", 1): EventPayloadV1,
}
POLLING_CONTRACT = "connector-item/1"
_POLLING_FIELDS = ("connector", "type", "item_id", "version", "payload")


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """An entry as rules see it, whatever its contract."""

    stream: str
    entry_id: str
    contract: str
    type: str
    source: str
    payload: Any
    event_id: str
    correlation_id: str | None = None
    priority: str = Priority.NORMAL.value
    timestamp: str | None = None
    # Contract-specific extras: item_id/version of a connector item, nodeId/unit...
    attributes: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The event as rule expressions and templates read it (``event.*``)."""
        return {
            "stream": self.stream,
            "entry_id": self.entry_id,
            "contract": self.contract,
            "type": self.type,
            "source": self.source,
            "event_id": self.event_id,
            "correlation_id": self.correlation_id,
            "priority": self.priority,
            "timestamp": self.timestamp,
            "payload": self.payload,
            **self.attributes,
        }


def parse_event(delivery: Delivery) -> InboundEvent:
    """The entry's normalized view; :class:`InvalidEventError` if no contract fits."""
    fields = delivery.fields
    if "event" in fields:
        return _from_document(delivery)
    if "connector" in fields or "item_id" in fields:
        return _from_connector_item(delivery)
    raise _invalid(
        delivery,
        f"no event contract fits fields {sorted(fields)}: expected 'event' (JSON) "
        f"or {', '.join(_POLLING_FIELDS)}",
    )


def _from_document(delivery: Delivery) -> InboundEvent:
    declared = delivery.fields.get("schema")
    # The common case in one parse: whatever validates as a base event would be inferred
    # as one (it has "type"); only the others need their keys read first.
    parsed = _valid_or_none(BaseEventV1, delivery.fields["event"]) if declared is None else None
    if parsed is not None:
        name, version = "base-event", 1
    else:
        name, version = _contract_of(delivery, declared)
        parsed = _validated(delivery, name, version)
    if isinstance(parsed, EventPayloadV1):
        return _from_event_payload(delivery, parsed, f"{name}/{version}")
    assert isinstance(parsed, BaseEventV1)
    return InboundEvent(
        stream=delivery.stream,
        entry_id=delivery.entry_id,
        contract=f"{name}/{version}",
        type=parsed.type,
        source=parsed.source,
        payload=parsed.payload,
        event_id=parsed.event_id or delivery.entry_id,
        correlation_id=parsed.correlation_id,
        priority=parsed.priority.value,
        timestamp=_iso(parsed.timestamp),
        raw=delivery.fields,
    )


def _from_event_payload(delivery: Delivery, parsed: EventPayloadV1, contract: str) -> InboundEvent:
    payload = parsed.model_dump(mode="json")
    return InboundEvent(
        stream=delivery.stream,
        entry_id=delivery.entry_id,
        contract=contract,
        type="event-payload",
        source=parsed.source,
        payload=payload,
        event_id=delivery.entry_id,
        timestamp=payload["timestamp"],
        attributes={"nodeId": parsed.nodeId, "unit": parsed.unit},
        raw=delivery.fields,
    )


def _from_connector_item(delivery: Delivery) -> InboundEvent:
    fields = delivery.fields
    missing = [name for name in _POLLING_FIELDS if not fields.get(name)]
    if missing:
        raise _invalid(delivery, f"{POLLING_CONTRACT}: missing field {', '.join(missing)}")
    unknown = sorted(set(fields) - set(_POLLING_FIELDS) - {"schema", REPLAY_OF_FIELD})
    if unknown:
        raise _invalid(delivery, f"{POLLING_CONTRACT}: unexpected field {', '.join(unknown)}")
    return InboundEvent(
        stream=delivery.stream,
        entry_id=delivery.entry_id,
        contract=POLLING_CONTRACT,
        type=fields["type"],
        source=fields["connector"],
        payload=_json_field(delivery, "payload"),
        event_id=f"{fields['connector']}:{fields['item_id']}:{fields['version']}",
        attributes={"item_id": fields["item_id"], "version": fields["version"]},
        raw=fields,
    )


def _contract_of(delivery: Delivery, declared: str | None) -> tuple[str, int]:
    if declared is not None:
        return _declared_contract(delivery, declared)
    document = _json_field(delivery, "event")
    if not isinstance(document, dict):
        raise _invalid(delivery, f"field event: expected a JSON object, got "
                                 f"{type(document).__name__}")
    return _inferred_contract(delivery, document)


def _validated(delivery: Delivery, name: str, version: int) -> _Contract:
    try:
        return CONTRACTS[(name, version)].model_validate_json(delivery.fields["event"])
    except ValidationError as exc:
        reason = describe_validation_error(exc, root="event")
        raise _invalid(delivery, f"{name}/{version}: {reason}") from None


def _valid_or_none(model: type[_Contract], text: str) -> _Contract | None:
    try:
        return model.model_validate_json(text)
    except ValidationError:
        return None


def _inferred_contract(delivery: Delivery, document: Mapping[str, Any]) -> tuple[str, int]:
    if "payload" in document or "type" in document:
        return "base-event", 1
    if "nodeId" in document or "value" in document:
        return "event-payload", 1
    raise _invalid(delivery, "field event: neither a base event (type, source, payload) "
                             "nor an event payload (source, value, timestamp, nodeId)")


def _declared_contract(delivery: Delivery, declared: str) -> tuple[str, int]:
    name, _, version_text = declared.partition("/")
    try:
        key = (name, int(version_text or "1"))
    except ValueError:
        key = (name, -1)
    if key not in CONTRACTS:
        known = ", ".join(f"{n}/{v}" for n, v in CONTRACTS)
        raise _invalid(delivery, f"field schema: unknown contract {declared!r} (known: {known})")
    return key


def _json_field(delivery: Delivery, name: str) -> Any:
    try:
        return orjson.loads(delivery.fields[name])
    except orjson.JSONDecodeError as exc:
        raise _invalid(delivery, f"field {name}: invalid JSON: {exc}") from None


def describe_validation_error(exc: ValidationError, *, root: str = "(root)") -> str:
    """``field a.b: message; field c: message``; ``root`` names the whole document."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or root
        problems.append(f"field {where}: {error['msg']}")
    return "; ".join(problems)


def _invalid(delivery: Delivery, reason: str) -> InvalidEventError:
    return InvalidEventError(f"invalid event {delivery.stream} {delivery.entry_id}: {reason}")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")
