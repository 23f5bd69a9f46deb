"""``device.config_update``, ``security.key_rotation``, ``power.sleep_schedule``,
``alert.threshold_monitor`` and ``diagnosis.self_test`` through the seven-step
executor against simulated devices on a real Mosquitto: each succeeds and is read
back; each times out (a device that never answers the command); each fails its
postcondition (a device that answers ok and does not apply it) and is rolled back,
audited; each is refused by its precondition (a silent device)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core.errors import CallFailedError, DeadLetterError, RolledBackError
from framework.testing import MosquittoServer
from providers.devices import DeviceSimulator
from providers.devices.simulator_device import SimulatedDevice
from providers.devices.simulator_extras import fingerprint
from tests.providers.devices.caps_rig import CapsRig, caps_rig
from tests.providers.devices.conftest import broker_of


@dataclass(frozen=True)
class Case:
    capability: str
    command: str
    params: dict[str, Any]
    applied: Callable[[SimulatedDevice], bool]
    # What the rollback must put back (the device's setting before the call).
    rollback: dict[str, Any]


SCHEDULE = {"sleepAt": "22:00", "wakeAt": "06:00", "timezone": "Europe/Paris"}
MONITOR = {"metric": "temperature", "above": 80.0, "below": 5.0, "hysteresis": 1.0,
           "priority": "high"}
CASES = [
    Case("device.config_update", "config_set", {"config": {"interval": 60}},
         lambda device: device.config == {"mode": "eco", "interval": 60},
         {"config": {"mode": "eco"}, "replace": True}),
    Case("security.key_rotation", "key_rotate", {"keyId": "key-2"},
         lambda device: (device.extras.key_id, device.extras.previous_key_id)
         == ("key-2", "key-1"), {"keyId": "key-1"}),
    Case("power.sleep_schedule", "sleep_schedule", {"schedule": SCHEDULE},
         lambda device: device.extras.sleep_schedule == SCHEDULE, {"schedule": None}),
    Case("alert.threshold_monitor", "threshold_set", {"monitorId": "hot", "monitor": MONITOR},
         lambda device: device.extras.monitors == {"hot": MONITOR}, {"monitor": None}),
    Case("diagnosis.self_test", "self_test", {},
         lambda device: device.self_test_passed, {}),
]
IDS = [case.capability for case in CASES]


@pytest.fixture
async def rig(redis: Redis, mosquitto: MosquittoServer) -> AsyncIterator[CapsRig]:
    made = await caps_rig(redis, broker_of(mosquitto))
    yield made
    await made.close()


def device_of(simulator: DeviceSimulator, index: int) -> SimulatedDevice:
    device = simulator.devices[f"sim-{index:05d}"]
    device.config.update({"mode": "eco"})
    return device


def params(case: Case, device: SimulatedDevice, **extra: Any) -> dict[str, Any]:
    return {"deviceId": device.device_id, **case.params, **extra}


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_setting_is_applied_read_back_and_audited(
        rig: CapsRig, simulator: DeviceSimulator, case: Case) -> None:
    device = device_of(simulator, CASES.index(case))
    result = await rig.run(case.capability, params(case, device))
    assert case.applied(device)
    [executed] = await rig.audit()
    assert executed.kind == "executed"
    assert executed.body["stateBefore"]["reachable"] is True
    assert "error" not in json.dumps(result)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_device_that_never_answers_the_command_times_out(
        rig: CapsRig, simulator: DeviceSimulator, case: Case) -> None:
    device = device_of(simulator, 5 + CASES.index(case))
    device.ignored_commands.add(case.command)
    with pytest.raises(CallFailedError, match=f"DeviceTimeoutError: device {device.device_id}"):
        await rig.run(case.capability, params(case, device, timeoutS=0.3))
    kinds = await rig.kinds()
    assert kinds == ["failed", "rollback"]
    assert (await rig.audit())[0].body["stage"] == "handler"
    assert not case.applied(device) or case.capability == "diagnosis.self_test"
    assert await rig.alerts()  # a failed rollback (same command, same silence) or an undo


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_setting_that_does_not_take_is_rolled_back_and_audited(
        rig: CapsRig, simulator: DeviceSimulator, case: Case) -> None:
    device = device_of(simulator, 10 + CASES.index(case))
    if case.capability == "diagnosis.self_test":
        device.fail_self_test = True  # the test runs, and fails
    else:
        device.no_effect.add(case.command)  # answered ok, never applied
    boots = device.boot_count
    with pytest.raises(RolledBackError, match="postcondition"):
        await rig.run(case.capability, params(case, device))
    failed, rollback = await rig.audit()
    assert (failed.kind, rollback.kind) == ("failed", "rollback")
    assert failed.body["stage"] == "postcondition"
    assert rollback.body["ok"] is True
    if case.capability == "diagnosis.self_test":
        assert rollback.body["action"].startswith("device.reboot")
        assert device.boot_count == boots + 1  # the failing device was rebooted
    else:
        for name, value in case.rollback.items():
            assert rollback.body["rollbackParams"][name] == value


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_silent_device_is_a_refused_precondition(
        rig: CapsRig, simulator: DeviceSimulator, case: Case) -> None:
    device = device_of(simulator, 15 + CASES.index(case))
    simulator.silence(device.device_id, 60)
    outcome = await rig.run(case.capability, params(case, device))
    assert outcome["outcome"] == "precondition_failed"
    assert outcome["condition"] == "state.reachable == true"
    assert await rig.kinds() == ["precondition_failed"]
    device.silent_until_s = 0
    assert not case.applied(device) or case.capability == "diagnosis.self_test"


async def test_an_unhealthy_device_does_not_rotate_its_key(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    device = simulator.devices["sim-00001"]
    device.self_test_passed = False
    outcome = await rig.run("security.key_rotation", {"deviceId": "sim-00001",
                                                      "keyId": "key-9"})
    assert outcome["condition"] == "state.self_test_passed == true"
    assert device.extras.key_id == "key-1"


async def test_a_key_rotation_reports_the_fingerprint_only(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    result = await rig.run("security.key_rotation", {"deviceId": "sim-00002", "keyId": "k2"})
    assert result["key_fingerprint"] == fingerprint("sim-00002", "k2")
    [executed] = await rig.audit()
    assert executed.body["stateAfter"]["keyId"] == "k2"


@pytest.mark.parametrize(("capability", "bad", "named"), [
    ("device.config_update", {"config": {}}, "empty config"),
    ("device.config_update", {"config": {f"k{i}": i for i in range(65)}}, "config"),
    ("device.config_update", {"config": {"a": 1}, "colour": "red"}, "colour"),
    ("security.key_rotation", {"keyId": "a/b"}, "keyId"),
    ("power.sleep_schedule", {"schedule": {"sleepAt": "25:00", "wakeAt": "06:00"}},
     "schedule.sleepAt"),
    ("power.sleep_schedule", {"schedule": {"sleepAt": "06:00", "wakeAt": "06:00"}},
     "never sleep"),
    ("alert.threshold_monitor", {"monitorId": "m", "monitor": {"metric": "t"}}, "above"),
    ("alert.threshold_monitor", {"monitorId": "m", "monitor": {
        "metric": "t", "above": 1, "below": 2}}, "lower than"),
    ("diagnosis.self_test", {"timeoutS": 0}, "timeoutS"),
])
async def test_bad_parameters_are_dead_letters_naming_the_parameter(
        rig: CapsRig, simulator: DeviceSimulator, capability: str, bad: dict[str, Any],
        named: str) -> None:
    with pytest.raises(DeadLetterError, match=named):
        await rig.run(capability, {"deviceId": "sim-00003", **bad})
    assert simulator.devices["sim-00003"].extras.key_id == "key-1"
    assert simulator.devices["sim-00003"].config == {}


async def test_a_repeated_key_rotation_keeps_the_previous_key(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    params = {"deviceId": "sim-00004", "keyId": "key-2"}
    await rig.run("security.key_rotation", params)
    await rig.run("security.key_rotation", params)  # a redelivery, a second rule
    extras = simulator.devices["sim-00004"].extras
    assert (extras.key_id, extras.previous_key_id) == ("key-2", "key-1")
