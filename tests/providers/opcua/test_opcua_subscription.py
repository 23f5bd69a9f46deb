"""``opcua-source`` in subscription mode on a real asyncua server and a real Redis:
data changes keep their source timestamp and status, a refused node does not stop
the others, a value too large is kept raw, the value a restarted connector is sent
again is not appended twice and the gap is reported."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from asyncua import Client, ua
from redis.asyncio import Redis

from framework.polling import PushConnector
from framework.testing.opcua import OpcUaServer, node_id
from providers.opcua import subscription
from tests.providers.opcua.conftest import events, opcua_connector, poll_until, write_values

pytestmark = pytest.mark.slow  # a server process per module (~2 s)

TEMPERATURE, LABEL, LEVEL = node_id("Temperature"), node_id("Label"), node_id("Level")


async def test_data_changes_keep_their_source_timestamp_and_status(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    connector = await opcua_connector(redis, opcua_server, nodeIds=[TEMPERATURE, LEVEL])
    assert isinstance(connector, PushConnector)
    try:
        await poll_until(connector, redis, 2)  # each node's current value first
        first = await write_values(opcua_server, {"Temperature": (21.5, ua.VariantType.Double),
                                                  "Level": (-7, ua.VariantType.Int16)})
        uncertain = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
        second = await write_values(opcua_server, {"Temperature": (22.25, ua.VariantType.Double)},
                                    status=uncertain)
        await poll_until(connector, redis, 5)
    finally:
        await connector.aclose()
    got = await events(redis)
    # One node's changes keep their order; two nodes' may interleave either way.
    temperature = [e for e in got[2:] if e["nodeId"] == TEMPERATURE]
    level = [e for e in got[2:] if e["nodeId"] == LEVEL]
    assert [e["value"] for e in temperature] == [21.5, 22.25]
    assert [e["value"] for e in level] == [-7]
    assert temperature[0]["timestamp"] == first.isoformat()
    assert temperature[0]["metadata"]["sourceTimestamp"] == first.isoformat()
    assert temperature[0]["metadata"]["statusCode"] == "Good"
    assert temperature[0]["metadata"]["variantType"] == "Double"
    assert level[0]["metadata"]["variantType"] == "Int16"
    assert temperature[1]["metadata"]["statusCode"] == "UncertainLastUsableValue"
    assert temperature[1]["metadata"]["status"] == ua.StatusCodes.UncertainLastUsableValue
    assert temperature[1]["timestamp"] == second.isoformat()
    ids = {fields["item_id"] for _, fields in await redis.xrange("raw-input-signals")}
    assert f"{TEMPERATURE}@{first.isoformat()}" in ids
    assert f"{TEMPERATURE}@{second.isoformat()}!UncertainLastUsableValue" in ids


async def test_a_refused_node_is_named_and_the_others_are_published(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    missing = "ns=2;s=NoSuchNode"
    with structlog.testing.capture_logs() as logs:
        connector = await opcua_connector(redis, opcua_server, nodeIds=[missing, LABEL])
        try:
            await poll_until(connector, redis, 1)
        finally:
            await connector.aclose()
    assert [e["nodeId"] for e in await events(redis)] == [LABEL]
    refused = [log for log in logs if log["event"] == "opcua_node_refused"]
    assert refused[0]["node_id"] == missing
    assert refused[0]["status"] == "BadNodeIdUnknown"


async def test_when_every_node_is_refused_the_start_fails_naming_them(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    connector = await opcua_connector(redis, opcua_server, nodeIds=["ns=2;s=Nope", "i=999999"])
    try:
        with pytest.raises(Exception, match=r"every node was refused: ns=2;s=Nope "
                                            r"\(BadNodeIdUnknown\), i=999999"):
            await connector.poll()
    finally:
        await connector.aclose()


async def test_a_value_over_the_size_limit_is_kept_raw_and_the_others_go_on(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    connector = await opcua_connector(redis, opcua_server, nodeIds=[LABEL], maxValueBytes=64)
    try:
        await poll_until(connector, redis, 1)
        await write_values(opcua_server, {"Label": ("x" * 65, ua.VariantType.String)})
        await write_values(opcua_server, {"Label": ("short", ua.VariantType.String)})
        await poll_until(connector, redis, 2)
    finally:
        await connector.aclose()
    assert [e["value"] for e in await events(redis)][1:] == ["short"]
    rejected = await redis.xrange("connector:state:plant-ua:rejected")
    assert len(rejected) == 1
    assert "opcua node ns=2;s=Label: a string of 65 bytes is over maxValueBytes (64)" in (
        rejected[0][1]["error"])


async def test_a_restarted_connector_does_not_repeat_the_current_value_and_reports_the_gap(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    first = await opcua_connector(redis, opcua_server, nodeIds=[TEMPERATURE])
    await write_values(opcua_server, {"Temperature": (30.0, ua.VariantType.Double)})
    try:
        await poll_until(first, redis, 1)
    finally:
        await first.aclose()
    await write_values(opcua_server, {"Temperature": (31.0, ua.VariantType.Double)})

    with structlog.testing.capture_logs() as logs:
        second = await opcua_connector(redis, opcua_server, nodeIds=[TEMPERATURE])
        try:
            await poll_until(second, redis, 2)
            for _ in range(3):  # the server's first notification was 31.0, not 30.0 again
                await second.poll()
        finally:
            await second.aclose()
    got = await events(redis)
    assert [e["value"] for e in got] == [30.0, 31.0]
    gap = got[1]["metadata"]["gap"]
    assert gap["reason"] == "connector restarted" and gap["ms"] >= 0
    assert "gap" not in got[0]["metadata"]
    assert [log["reason"] for log in logs if log["event"] == "opcua_gap"] == [
        "connector restarted"]


async def test_the_same_value_sent_again_on_a_new_subscription_is_appended_once(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    stamp = await write_values(opcua_server, {"Temperature": (40.0, ua.VariantType.Double)})
    for _ in range(2):
        connector = await opcua_connector(redis, opcua_server, nodeIds=[TEMPERATURE])
        try:
            await poll_until(connector, redis, 1)
            await connector.poll()
        finally:
            await connector.aclose()
    entries = [fields for _, fields in await redis.xrange("raw-input-signals")]
    assert [entry["item_id"] for entry in entries] == [f"{TEMPERATURE}@{stamp.isoformat()}"]


async def test_a_burst_of_changes_arrives_in_order(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    connector = await opcua_connector(redis, opcua_server, nodeIds=[LEVEL],
                                      subscription={"publishingIntervalMs": 50,
                                                    "samplingIntervalMs": 0, "queueSize": 1000})
    try:
        await poll_until(connector, redis, 1)
        await _write_burst(opcua_server, range(1, 201))
        await poll_until(connector, redis, 201)
    finally:
        await connector.aclose()
    assert [e["value"] for e in await events(redis)][1:] == list(range(1, 201))


async def _write_burst(server: OpcUaServer, values: Any) -> None:
    async with Client(server.endpoint, timeout=10) as client:
        node = client.get_node(LEVEL)
        for value in values:
            await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Int16),
                                                SourceTimestamp=datetime.now(UTC)))
            await asyncio.sleep(0)


async def test_too_many_waiting_changes_resubscribe_and_report_the_gap_not_grow(
    redis: Redis, opcua_server: OpcUaServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscription, "INBOX_LIMIT", 20)
    with structlog.testing.capture_logs() as logs:
        connector = await opcua_connector(
            redis, opcua_server, nodeIds=[LEVEL],
            subscription={"publishingIntervalMs": 50, "samplingIntervalMs": 0,
                          "queueSize": 1000})
        try:
            await poll_until(connector, redis, 1)
            await _write_burst(opcua_server, range(300, 400))  # nobody takes them meanwhile
            await asyncio.sleep(0.5)
            async with asyncio.timeout(20):
                while 399 not in [e["value"] for e in await events(redis)]:
                    try:
                        await connector.poll()
                    except Exception:  # the overflow: the next window subscribes again
                        await asyncio.sleep(0.05)
        finally:
            await connector.aclose()
    lost = [log for log in logs if log["event"] == "opcua_connection_lost"]
    assert lost and lost[0]["reason"] == "more than 20 changes waiting"
    got = await events(redis)
    assert [e for e in got if "gap" in e["metadata"]]
    values = [e["value"] for e in got][1:]
    assert values == sorted(set(values)) and values[-1] == 399
