"""``device.telemetry_collect`` and ``network.topology_map`` through the seven-step
executor against simulated devices on a real Mosquitto and the history in a real
Redis stream: success, timeout, postcondition failure (audited and alerted: a
read-only capability has nothing to undo, its rollback is ``none``), refused
precondition, and hostile inputs (a stream that is not allowed, other entries in
the stream, a device that reports neighbours that are not device ids)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from framework.core.errors import CallFailedError, DeadLetterError, RolledBackError
from framework.testing import MosquittoServer
from providers.devices import DeviceSimulator
from tests.providers.devices.caps_rig import CapsRig, caps_rig
from tests.providers.devices.conftest import broker_of

STREAM = "raw-input-signals"


@pytest.fixture
async def rig(redis: Redis, mosquitto: MosquittoServer) -> AsyncIterator[CapsRig]:
    made = await caps_rig(redis, broker_of(mosquitto))
    yield made
    await made.close()


async def append(redis: Redis, node: str, value: object, kind: str = "telemetry") -> None:
    """One entry as the mqtt-source connector appends it (framework append.lua)."""
    payload = {"source": "mqtt", "value": value, "nodeId": node,
               "timestamp": "2026-12-03T10:00:00+00:00", "metadata": {"kind": kind}}
    await redis.xadd(STREAM, {"connector": "devices-mqtt", "type": "mqtt-source",
                              "item_id": "x", "version": "1", "payload": json.dumps(payload)})


async def test_telemetry_collect_summarises_the_devices_window(
        rig: CapsRig, redis: Redis, simulator: DeviceSimulator) -> None:
    for value in (19.5, 21.0, 22.5):
        await append(redis, "sim-00001", value)
    await append(redis, "sim-00001", "alive", kind="heartbeat")
    await append(redis, "sim-00002", 99.0)  # another device
    await redis.xadd(STREAM, {"payload": b"\xff not json"})  # another producer
    result = await rig.run("device.telemetry_collect", {"deviceId": "sim-00001",
                                                         "windowS": 600})
    assert (result["count"], result["min"], result["max"], result["last"]) == (
        3, 19.5, 22.5, 22.5)
    assert result["scanned"] == 6 and result["truncated"] is False
    assert result["fresh"]["unit"] == "C"  # one reading asked of the device
    assert await rig.kinds() == ["executed"]


async def test_telemetry_collect_stops_at_max_readings(
        rig: CapsRig, redis: Redis, simulator: DeviceSimulator) -> None:
    for value in range(12):
        await append(redis, "sim-00001", value)
    result = await rig.run("device.telemetry_collect", {"deviceId": "sim-00001",
                                                         "maxReadings": 5})
    assert (result["count"], result["last"], result["truncated"]) == (5, 4.0, True)


async def test_telemetry_collect_reads_only_the_streams_it_is_allowed(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    with pytest.raises(DeadLetterError, match=r"params.stream: 'audit:chain' is not one"):
        await rig.run("device.telemetry_collect", {"deviceId": "sim-00001",
                                                   "stream": "audit:chain"})
    with pytest.raises(DeadLetterError, match="stream"):
        await rig.run("device.telemetry_collect", {"deviceId": "sim-00001", "stream": "*"})


@pytest.mark.slow
async def test_telemetry_collect_times_out_when_the_device_does_not_answer(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    simulator.devices["sim-00004"].ignored_commands.add("telemetry_read")
    with pytest.raises(CallFailedError, match="DeviceTimeoutError: device sim-00004"):
        await rig.run("device.telemetry_collect", {"deviceId": "sim-00004", "timeoutS": 0.3})
    assert await rig.kinds() == ["failed"]
    [alert] = await rig.alerts()
    assert "capability.failure" in json.dumps(alert)


@pytest.mark.slow
async def test_an_empty_window_fails_the_postcondition_audited_and_alerted(
        rig: CapsRig, redis: Redis, simulator: DeviceSimulator) -> None:
    await append(redis, "sim-00002", 20.0)
    with pytest.raises(RolledBackError, match=r"result.count > 0.*rollback none"):
        await rig.run("device.telemetry_collect", {"deviceId": "sim-00005"})
    [failed] = await rig.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    [alert] = await rig.alerts()
    assert "nothing was undone" in json.dumps(alert) or "none" in json.dumps(alert)


@pytest.mark.parametrize("capability", ["device.telemetry_collect", "network.topology_map"])
async def test_a_silent_device_is_a_refused_precondition(
        rig: CapsRig, simulator: DeviceSimulator, capability: str) -> None:
    simulator.silence("sim-00006", 60)
    outcome = await rig.run(capability, {"deviceId": "sim-00006"})
    assert (outcome["outcome"], outcome["condition"]) == ("precondition_failed",
                                                          "state.reachable == true")
    assert await rig.kinds() == ["precondition_failed"]


async def test_topology_map_walks_the_mesh_breadth_first(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    result = await rig.run("network.topology_map", {"deviceId": "sim-00000",
                                                     "maxDepth": 8})
    assert {node["deviceId"] for node in result["nodes"]} == set(simulator.devices)
    assert len(result["edges"]) == len(simulator.devices) - 1  # a tree
    depth = {node["deviceId"]: node["depth"] for node in result["nodes"]}
    assert (depth["sim-00000"], depth["sim-00001"], depth["sim-00019"]) == (0, 1, 4)
    assert result["complete"] is True
    assert await rig.kinds() == ["executed"]


async def test_topology_map_stops_at_max_depth(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    near = await rig.run("network.topology_map", {"deviceId": "sim-00000", "maxDepth": 2})
    assert sorted(node["depth"] for node in near["nodes"]) == [0, 1, 1, 2, 2, 2, 2]
    assert near["complete"] is True


@pytest.mark.slow
async def test_a_map_cut_at_max_devices_fails_the_postcondition(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    with pytest.raises(RolledBackError, match="result.complete == true"):
        await rig.run("network.topology_map", {"deviceId": "sim-00000", "maxDevices": 4,
                                               "maxDepth": 8})
    [failed] = await rig.audit()
    assert failed.body["stage"] == "postcondition"


@pytest.mark.slow
async def test_neighbours_that_are_not_device_ids_are_never_addressed(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    root = simulator.devices["sim-00000"]
    root.extras.neighbours = [*root.extras.neighbours, {"deviceId": "devices/#"},
                              {"deviceId": "../etc"}, "junk"]
    with pytest.raises(RolledBackError, match="result.complete == true"):
        await rig.run("network.topology_map", {"deviceId": "sim-00000"})
    executed = (await rig.audit())[0]
    assert executed.body["stage"] == "postcondition"


@pytest.mark.slow
async def test_a_silent_part_of_the_mesh_fails_the_postcondition(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    simulator.silence("sim-00001", 60)  # sim-00003, 4, 7... are behind it
    with pytest.raises(RolledBackError, match="result.complete == true"):
        await rig.run("network.topology_map", {"deviceId": "sim-00000", "timeoutS": 0.3})
    [failed] = await rig.audit()
    assert failed.body["stage"] == "postcondition"
    assert await rig.alerts()


@pytest.mark.slow
async def test_topology_map_times_out_when_the_root_does_not_answer(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    simulator.devices["sim-00000"].ignored_commands.add("topology")
    with pytest.raises(CallFailedError, match="DeviceTimeoutError: device sim-00000"):
        await rig.run("network.topology_map", {"deviceId": "sim-00000", "timeoutS": 0.3})
    assert await rig.kinds() == ["failed"]
