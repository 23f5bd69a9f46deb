"""``pump_control`` and ``irrigation_control`` over OPC-UA, against a real asyncua
server: a start at a speed written with each node's own variant type (a Float node
gets a Float) and read back through the signed pipeline, the dry-running interlock
refusing a start, an unknown node a clear permanent error, a server that is gone
read as unreachable, and a zone's valve opened with its close scheduled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import PermanentSourceError, SystemClock, get_logger
from framework.testing import free_port
from providers.plant import (
    CloseSchedule,
    PlantSettings,
    irrigation_control_spec,
    pump_control_spec,
)
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig
from tests.providers.opcua_peer import OpcuaPeer

pytestmark = pytest.mark.slow  # an OPC-UA server takes ~1.7 s to start

START = {"pumpId": "P-01", "action": "start", "speed": 37.5}


@pytest.fixture
async def server() -> AsyncIterator[OpcuaPeer]:
    async with OpcuaPeer() as peer:
        yield peer


def settings(endpoint: str, namespace: int, run_node: str = "P01.Run") -> PlantSettings:
    def node(name: str) -> dict[str, Any]:
        return {"node": f"ns={namespace};s={name}"}

    return PlantSettings.model_validate({
        "devices": {"opc-1": {"protocol": "opcua", "endpoint": endpoint, "timeoutMs": 3000}},
        "pumps": {"P-01": {"device": "opc-1", "run": node(run_node), "speed": node("P01.Speed"),
                           "signals": {"level": node("P01.Level"),
                                       "inletOpen": node("P01.InletOpen")}}},
        "zones": {"Z-01": {"device": "opc-1", "valve": node("Z01.Valve"),
                           "maxDurationS": 600}}})


async def pump_rig(redis: Redis, plant: PlantSettings) -> Rig:
    return await safe_rig(redis, [pump_control_spec(plant, policy=FAST_POLICY)],
                          [definition_path("plant", "pump_control")])


def context(redis: Redis) -> CallContext:
    return CallContext(idempotency_key="plant:1-0:r:s", event={}, redis=redis,
                       clock=SystemClock(), logger=get_logger(test="opcua"))


async def test_a_start_at_a_speed_is_written_and_read_back_over_opcua(
        redis: Redis, server: OpcuaPeer) -> None:
    rig = await pump_rig(redis, settings(server.endpoint, server.namespace))

    await rig.call("pump_control", START)

    assert await server.value("P01.Run") is True
    assert await server.value("P01.Speed") == pytest.approx(37.5)
    [record] = await rig.audit()
    assert record.kind == "executed"
    assert record.body["stateAfter"]["running"] is True
    assert record.body["stateAfter"]["signals"] == {"level": 0.8, "inletOpen": True}


async def test_the_dry_running_interlock_refuses_a_start_over_opcua(
        redis: Redis, server: OpcuaPeer) -> None:
    await server.set("P01.Level", 0.05)
    rig = await pump_rig(redis, settings(server.endpoint, server.namespace))
    result = await rig.call("pump_control", START)
    assert result["outcome"] == "precondition_failed"
    assert await server.value("P01.Run") is False


async def test_an_unknown_node_is_a_permanent_error_naming_it(
        redis: Redis, server: OpcuaPeer) -> None:
    spec = pump_control_spec(settings(server.endpoint, server.namespace, run_node="P01.Nope"))
    with pytest.raises(PermanentSourceError, match=r"write True of node ns=\d+;s=P01.Nope "
                       r"refused: BadNodeIdUnknown"):
        await spec.handler({"pumpId": "P-01", "action": "start"}, context(redis))


async def test_a_server_that_is_gone_reads_as_unreachable(redis: Redis) -> None:
    spec = pump_control_spec(settings(f"opc.tcp://127.0.0.1:{free_port()}/", 2))
    assert spec.read_state is not None
    state = await spec.read_state(START, context(redis))
    assert state["reachable"] is False


async def test_a_zone_valve_opens_over_opcua_with_its_close_scheduled(
        redis: Redis, server: OpcuaPeer) -> None:
    spec = irrigation_control_spec(settings(server.endpoint, server.namespace))
    result = await spec.handler({"zoneId": "Z-01", "action": "open", "durationS": 60},
                                context(redis))
    assert await server.value("Z01.Valve") is True
    assert await CloseSchedule(redis).due_ms("Z-01") == result["closesAtMs"]
