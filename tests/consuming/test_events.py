"""Event contracts: base events, event payloads and connector items parse into one view;
invalid entries raise a dead letter naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming.delivery import Delivery
from framework.consuming.events import CONTRACTS, BaseEventV1, parse_event
from framework.core.errors import DeadLetterError, InvalidEventError


def delivery(fields: dict[str, str], entry_id: str = "1700000000000-0") -> Delivery:
    return Delivery(stream="events", entry_id=entry_id, fields=fields, group="g", consumer="c")


def event_entry(document: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"event": orjson.dumps(document).decode(), **extra}


def test_base_event_parses_with_every_field() -> None:
    event = parse_event(delivery(event_entry({
        "event_id": "e-1", "type": "notification.received", "source": "parrot",
        "timestamp": "2026-11-22T10:30:00Z", "priority": "high", "correlation_id": "c-9",
        "payload": {"title": "Build failed", "tags": ["ci"]},
    })))
    assert (event.contract, event.type, event.source) == (
        "base-event/1", "notification.received", "parrot")
    assert event.payload == {"title": "Build failed", "tags": ["ci"]}
    assert (event.event_id, event.correlation_id, event.priority) == ("e-1", "c-9", "high")
    assert event.timestamp == "2026-11-22T10:30:00Z"


def test_base_event_without_event_id_takes_the_entry_id() -> None:
    event = parse_event(delivery(event_entry({"type": "t", "source": "s", "payload": {}}),
                                 entry_id="42-7"))
    assert event.event_id == "42-7"
    assert event.priority == "normal"


def test_event_payload_of_a_sensor_parses() -> None:
    event = parse_event(delivery(event_entry({
        "source": "sensor:temperature_cuve", "value": 8.9, "unit": "°C",
        "timestamp": "2026-11-22T10:30:00.000Z", "nodeId": "svm-3",
        "metadata": {"site": "nord"},
    })))
    assert event.contract == "event-payload/1"
    assert event.source == "sensor:temperature_cuve"
    assert event.payload["value"] == 8.9
    assert event.as_dict()["nodeId"] == "svm-3"


async def test_polling_connector_entries_as_commit_lua_writes_them(redis: Redis) -> None:
    entry_id = await redis.xadd("raw-input-signals", {
        "connector": "weather-noaa", "type": "NOAA_WEATHER", "item_id": "alert-1",
        "version": "v3", "payload": orjson.dumps({"severity": "Extreme"}).decode()})
    [[_, [(read_id, fields)]]] = await redis.xread({"raw-input-signals": "0"})
    event = parse_event(Delivery("raw-input-signals", read_id, fields, "g", "c"))
    assert read_id == entry_id
    assert (event.contract, event.type, event.source) == (
        "connector-item/1", "NOAA_WEATHER", "weather-noaa")
    assert event.payload == {"severity": "Extreme"}
    assert event.as_dict()["item_id"] == "alert-1"


@pytest.mark.parametrize(("document", "named"), [
    ({"type": "t", "source": "s"}, "field payload: Field required"),
    ({"type": "t", "source": "s", "payload": {}, "colour": "red"},
     "field colour: Extra inputs are not permitted"),
    ({"type": "t", "source": "s", "payload": {}, "priority": "urgent"}, "field priority"),
    ({"type": "t", "source": "s", "payload": [1, 2]}, "field payload: Input should be"),
    ({"type": 5, "source": "s", "payload": {}}, "field type: Input should be a valid string"),
    ({"source": "sensor", "value": 1, "timestamp": "yesterday", "nodeId": "n"},
     "field timestamp"),
    ({"source": "sensor", "value": 1, "timestamp": "2026-01-01T00:00:00Z"},
     "field nodeId: Field required"),
])
def test_invalid_events_are_dead_letters_naming_the_field(
    document: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(delivery(event_entry(document)))
    assert named in caught.value.reason
    assert "events 1700000000000-0" in caught.value.reason
    assert isinstance(caught.value, DeadLetterError)


@pytest.mark.parametrize(("fields", "named"), [
    ({"event": "{not json"}, "field event: invalid JSON"),
    ({"event": "[1]"}, "field event: expected a JSON object"),
    ({"body": "x"}, "no event contract fits fields ['body']"),
    ({"connector": "c", "type": "T", "item_id": "1", "version": "v"},
     "missing field payload"),
    ({"connector": "c", "type": "T", "item_id": "1", "version": "v", "payload": "{",
      }, "field payload: invalid JSON"),
    ({"connector": "c", "type": "T", "item_id": "1", "version": "v", "payload": "{}",
      "extra": "x"}, "unexpected field extra"),
    (event_entry({"type": "t", "source": "s", "payload": {}}, schema="base-event/9"),
     "field schema: unknown contract 'base-event/9'"),
])
def test_malformed_entries_name_what_is_wrong(fields: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(delivery(fields))
    assert named in caught.value.reason


def test_a_declared_schema_selects_the_contract() -> None:
    # Without the declaration this would be read as a base event and fail on 'value'.
    document = {"source": "s", "value": 1, "type": "x",
                "timestamp": "2026-01-01T00:00:00Z", "nodeId": "n"}
    with pytest.raises(InvalidEventError, match="field type: Extra inputs"):
        parse_event(delivery(event_entry(document, schema="event-payload/1")))


def test_contracts_are_versioned_and_a_v2_is_one_more_entry() -> None:
    assert CONTRACTS[("base-event", 1)] is BaseEventV1

    class BaseEventV2(BaseEventV1):
        tenant: str

    CONTRACTS[("base-event", 2)] = BaseEventV2
    try:
        event = parse_event(delivery(event_entry(
            {"type": "t", "source": "s", "payload": {}, "tenant": "acme"},
            schema="base-event/2")))
        assert event.contract == "base-event/2"
        with pytest.raises(InvalidEventError, match="field tenant: Extra inputs"):
            parse_event(delivery(event_entry(
                {"type": "t", "source": "s", "payload": {}, "tenant": "acme"})))
    finally:
        del CONTRACTS[("base-event", 2)]


@pytest.mark.parametrize(("event", "named"), [
    ("{broken", "field event: Invalid JSON"),
    ("[1, 2]", "field event: Input should be an object"),
])
def test_declared_contracts_report_broken_documents_too(event: str, named: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(delivery({"event": event, "schema": "base-event/1"}))
    assert named in caught.value.reason
