"""``opcua-source`` in polling mode on a real asyncua server: a changed value or
status is published once, an unchanged one never again, a refused node is a failed
item naming it while the others publish, and a reconnect reports the gap."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from asyncua import ua
from redis.asyncio import Redis

from framework.polling import UniversalPollingConnector
from framework.testing.opcua import OpcUaServer, node_id
from tests.providers.opcua.conftest import events, opcua_connector, write_values

pytestmark = pytest.mark.slow  # a server process per module (~2 s)

PRESSURE, RUNNING = node_id("Pressure"), node_id("Running")


async def polling(redis: Redis, server: OpcUaServer, **provider: Any) -> Any:
    connector = await opcua_connector(redis, server, mode="polling", **provider)
    assert isinstance(connector, UniversalPollingConnector)
    return connector


async def test_changes_are_published_once_with_their_source_timestamp(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    connector = await polling(redis, opcua_server, nodeIds=[PRESSURE, RUNNING])
    try:
        first = await connector.poll()
        again = await connector.poll()
        stamp = await write_values(opcua_server, {"Pressure": (2.5, ua.VariantType.Double)})
        changed = await connector.poll()
        bad = ua.StatusCode(ua.StatusCodes.BadSensorFailure)
        await write_values(opcua_server, {"Pressure": (2.5, ua.VariantType.Double)}, status=bad)
        status_only = await connector.poll()
    finally:
        await connector.aclose()
    assert (first.published, again.published, changed.published,
            status_only.published) == (2, 0, 1, 1)
    got = await events(redis)
    assert [(e["nodeId"], e["value"]) for e in got] == [
        (PRESSURE, 1.0), (RUNNING, False), (PRESSURE, 2.5), (PRESSURE, None)]
    assert got[2]["timestamp"] == stamp.isoformat()
    assert got[2]["metadata"]["statusCode"] == "Good"
    # A Bad value comes without its value (OPC-UA Part 4 7.7.1): the status says why.
    assert got[3]["metadata"]["statusCode"] == "BadSensorFailure"
    entry = (await redis.xrange("raw-input-signals"))[2][1]
    assert (entry["item_id"], entry["type"]) == (PRESSURE, "opcua-source")


async def test_a_refused_node_is_a_failed_item_and_the_others_publish(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    connector = await polling(redis, opcua_server, nodeIds=["ns=2;s=Missing", RUNNING])
    with structlog.testing.capture_logs() as logs:
        try:
            summary = await connector.poll()
        finally:
            await connector.aclose()
    assert (summary.published, summary.failed) == (1, 1)
    assert [e["nodeId"] for e in await events(redis)] == [RUNNING]
    failed = [log for log in logs if log["event"] == "item_failed"]
    assert failed[0]["item_id"] == "ns=2;s=Missing"
    assert "opcua node ns=2;s=Missing on opc.tcp://" in failed[0]["error"]
    assert "not read: BadNodeIdUnknown" in failed[0]["error"]


async def test_a_server_restart_fails_one_poll_then_reconnects_and_reports_the_gap(
    redis: Redis,
) -> None:
    with OpcUaServer() as server, structlog.testing.capture_logs() as logs:
        connector = await polling(redis, server, nodeIds=[node_id("Level")], timeout_ms=2000)
        try:
            await connector.poll()
            server.stop()
            with pytest.raises(Exception, match=r"opcua server opc.tcp://127.0.0.1:\d+/fleet"):
                await connector.poll()
            server.start()
            await write_values(server, {"Level": (9, ua.VariantType.Int16)})
            summary = await connector.poll()
        finally:
            await connector.aclose()
    assert summary.published == 1
    got = await events(redis)
    assert [e["value"] for e in got] == [0, 9]
    assert got[1]["metadata"]["gap"]["reason"] == "connection lost"
    assert "opcua_gap" in [log["event"] for log in logs]


async def test_a_new_process_reports_the_gap_since_the_last_saved_poll(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    first = await polling(redis, opcua_server, nodeIds=[node_id("Label")])
    try:
        await first.poll()
    finally:
        await first.aclose()
    await write_values(opcua_server, {"Label": ("after", ua.VariantType.String)})
    with structlog.testing.capture_logs() as logs:
        second = await polling(redis, opcua_server, nodeIds=[node_id("Label")])
        try:
            await second.poll()
            await write_values(opcua_server, {"Label": ("later", ua.VariantType.String)})
            await second.poll()
        finally:
            await second.aclose()
    got = await events(redis)
    assert [e["value"] for e in got][-2:] == ["after", "later"]
    assert got[-2]["metadata"]["gap"]["reason"] == "connector restarted"
    assert "gap" not in got[-1]["metadata"]
    assert [log["reason"] for log in logs if log["event"] == "opcua_gap"] == [
        "connector restarted"]
