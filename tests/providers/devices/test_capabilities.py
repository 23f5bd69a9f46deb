"""``device.firmware_update`` and ``device.reboot`` through the seven-step executor,
against simulated devices on a real Mosquitto: success, a refused manifest, a
refused precondition, a failing self-test rolled back with an alert, a device that
bricks (timeout, failed rollback, critical alert)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from framework.core.errors import CallFailedError, DeadLetterError, RolledBackError
from framework.testing import MosquittoServer
from framework.trust.catalog.signing import PrivateKey
from providers.devices import DeviceSimulator
from tests.providers.devices.conftest import broker_of
from tests.providers.devices.rig import DEFINITIONS, DeviceRig, device_rig, manifest


@pytest.fixture
def firmware_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
async def rig(redis: Redis, mosquitto: MosquittoServer,
              firmware_key: PrivateKey) -> AsyncIterator[DeviceRig]:
    made = await device_rig(redis, broker_of(mosquitto), firmware_key, state_timeout_s=1.0)
    yield made
    await made.actions.aclose()


def update(device_id: str, version: str, key: PrivateKey, **extra: object) -> dict[str, object]:
    return {"deviceId": device_id, "version": version, "manifest": manifest(version, key),
            "timeoutS": 2, **extra}


async def test_a_signed_firmware_is_installed_checked_and_audited(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    result = await rig.call("device.firmware_update", update("sim-00001", "1.2.0", firmware_key))
    assert result["firmware_version"] == "1.2.0" and result["updated"] is True
    device = simulator.devices["sim-00001"]
    assert (device.firmware_version, device.previous_version) == ("1.2.0", "1.0.0")
    [executed] = await rig.audit()
    assert executed.kind == "executed"
    assert executed.body["stateBefore"]["version"] == "1.0.0"
    assert executed.body["stateAfter"]["firmware_version"] == "1.2.0"
    # Asked again (a redelivery, a resumed rollout): not installed twice.
    again = await rig.call("device.firmware_update", update("sim-00001", "1.2.0", firmware_key),
                           key="1-1")
    assert again["updated"] is False
    assert device.firmware_updates == 1


@pytest.mark.parametrize("tamper", ["other_key", "changed_url", "unsigned", "other_version"])
async def test_a_manifest_that_cannot_be_trusted_is_never_sent(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey,
        tamper: str) -> None:
    params = update("sim-00002", "1.2.0", firmware_key)
    signed = dict(params["manifest"])  # type: ignore[call-overload]
    if tamper == "other_key":
        signed = manifest("1.2.0", PrivateKey.generate())
    elif tamper == "changed_url":
        signed["url"] = "https://evil.example.com/meter.bin"
    elif tamper == "unsigned":
        signed["signature"] = None
    else:
        signed = manifest("1.3.0", firmware_key)
        signed["version"] = "1.2.0"  # a 1.3.0 manifest relabelled
    with pytest.raises(DeadLetterError,
                       match="InvalidFirmwareManifestError: device sim-00002: firmware manifest"):
        await rig.call("device.firmware_update", {**params, "manifest": signed})
    assert simulator.devices["sim-00002"].firmware_updates == 0
    assert (await rig.kinds())[0] == "failed"


@pytest.mark.slow
async def test_a_device_that_does_not_answer_is_a_refused_precondition(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    simulator.silence("sim-00003", 60)
    outcome = await rig.call("device.firmware_update", update("sim-00003", "1.2.0", firmware_key))
    assert outcome["executed"] is False
    assert outcome["outcome"] == "precondition_failed"
    assert outcome["condition"] == "state.reachable == true"
    assert await rig.kinds() == ["precondition_failed"]
    assert simulator.devices["sim-00003"].firmware_updates == 0


@pytest.mark.slow
async def test_a_failing_self_test_rolls_back_to_the_previous_firmware_with_an_alert(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    device = simulator.devices["sim-00004"]
    device.fail_self_test = True
    with pytest.raises(RolledBackError, match="self_test_passed == true.*rollback revert done"):
        await rig.call("device.firmware_update", update("sim-00004", "1.2.0", firmware_key))
    assert device.firmware_version == "1.0.0"
    assert device.firmware_updates == 2  # the update, then the rollback
    assert await rig.kinds() == ["failed", "rollback"]
    rollback = (await rig.audit())[1]
    assert rollback.body["ok"] is True
    assert rollback.body["rollbackParams"]["version"] == "1.0.0"
    [alert] = await rig.alerts()
    event = json.loads(alert["event"]) if "event" in alert else alert
    assert "capability.rollback" in json.dumps(event)


@pytest.mark.slow
async def test_a_bricked_device_times_out_its_rollback_fails_and_the_alert_is_critical(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    device = simulator.devices["sim-00005"]
    device.brick_on.add("6.6.6")
    # The update is sent and never answered; the retry finds the device silent.
    with pytest.raises(CallFailedError, match="DeviceTimeoutError: device sim-00005: no answer"):
        await rig.call("device.firmware_update",
                       update("sim-00005", "6.6.6", firmware_key, timeoutS=0.5))
    assert device.bricked and device.firmware_updates == 1
    assert await rig.kinds() == ["failed", "rollback"]
    assert (await rig.audit())[1].body["ok"] is False
    [alert] = await rig.alerts()
    assert "critical" in json.dumps(alert)


async def test_bad_parameters_are_dead_letters_naming_the_parameter(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    with pytest.raises(DeadLetterError, match="deviceId"):
        await rig.call("device.firmware_update", update("devices/#", "1.2.0", firmware_key))
    with pytest.raises(DeadLetterError, match=r"manifest.sha256"):
        await rig.call("device.firmware_update", {
            **update("sim-00006", "1.2.0", firmware_key),
            "manifest": {**manifest("1.2.0", firmware_key), "sha256": "nope"}})
    assert simulator.devices["sim-00006"].firmware_updates == 0


async def test_a_version_with_no_manifest_is_only_the_devices_previous_one(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    with pytest.raises(DeadLetterError, match="no signed manifest for version 9.0.0"):
        await rig.call("device.firmware_update", {"deviceId": "sim-00007", "version": "9.0.0"})
    assert simulator.devices["sim-00007"].firmware_updates == 0


async def test_without_a_manifest_a_device_only_goes_back_never_forward(
        rig: DeviceRig, simulator: DeviceSimulator, firmware_key: PrivateKey) -> None:
    await rig.call("device.firmware_update", update("sim-00011", "1.2.0", firmware_key))
    back = await rig.call("device.firmware_update", {"deviceId": "sim-00011",
                                                     "version": "1.0.0"}, key="1-1")
    assert (back["firmware_version"], back["rolledBack"]) == ("1.0.0", True)
    # The device now holds 1.2.0 in its other slot: installing it again needs the manifest.
    with pytest.raises(DeadLetterError, match="1.2.0 is newer than the installed 1.0.0"):
        await rig.call("device.firmware_update", {"deviceId": "sim-00011", "version": "1.2.0"},
                       key="1-2")
    assert simulator.devices["sim-00011"].firmware_version == "1.0.0"
    assert simulator.devices["sim-00011"].firmware_updates == 2


async def test_reboot_through_the_executor(rig: DeviceRig, simulator: DeviceSimulator) -> None:
    result = await rig.call("device.reboot", {"deviceId": "sim-00008"})
    assert result == {"boot_count": 2}
    assert await rig.kinds() == ["executed"]


@pytest.mark.slow
async def test_a_reboot_never_answered_times_out_and_one_of_a_silent_device_is_refused(
        rig: DeviceRig, simulator: DeviceSimulator) -> None:
    simulator.devices["sim-00009"].ignored_commands.add("reboot")
    with pytest.raises(CallFailedError, match="sim-00009: no answer to reboot within 0.5 s"):
        await rig.call("device.reboot", {"deviceId": "sim-00009", "timeoutS": 0.5})
    assert simulator.devices["sim-00009"].boot_count == 1
    simulator.silence("sim-00010", 60)
    outcome = await rig.call("device.reboot", {"deviceId": "sim-00010"}, key="1-1")
    assert (outcome["executed"], outcome["outcome"]) == (False, "precondition_failed")
    assert await rig.kinds() == ["failed", "precondition_failed"]


def test_the_shipped_definitions_parse_and_name_their_handlers() -> None:
    from framework.trust import parse_definition

    for path in DEFINITIONS.glob("*.json"):
        parsed = parse_definition(path.read_bytes(), source=str(path))
        assert parsed.handler == f"{parsed.id}@{parsed.version}"

