"""The device simulator: heartbeats and telemetry on real Mosquitto, injected
faults (silence, failing self-tests, a bricking firmware), duplicate commands, and
the ``devices simulate`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

import pytest
from paho.mqtt import client as mqtt

from framework.core import get_logger
from framework.testing import FakeClock, MosquittoServer, free_port
from providers.devices import (
    DeviceChannel,
    DeviceSimulator,
    DeviceTimeoutError,
    SimulatedDevice,
    SimulatorOptions,
)
from tests.cli import INSTALLED_CLI
from tests.conftest import REPO_ROOT
from tests.providers.devices.conftest import broker_of
from worker.cli import run_fleet_command


async def collect(raw_client: mqtt.Client, topic: str) -> asyncio.Queue[tuple[str, dict]]:  # type: ignore[type-arg]
    received: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()  # type: ignore[type-arg]
    loop = asyncio.get_running_loop()
    raw_client.on_message = lambda _c, _u, message: loop.call_soon_threadsafe(
        received.put_nowait, (message.topic, json.loads(message.payload)))
    raw_client.subscribe(topic, qos=1)
    await asyncio.sleep(0.2)  # the SUBACK
    return received


async def drain(queue: asyncio.Queue[tuple[str, dict]], expected: int) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    got = [await asyncio.wait_for(queue.get(), 5) for _ in range(expected)]
    await asyncio.sleep(0.2)
    while not queue.empty():
        got.append(queue.get_nowait())
    return got


async def test_live_devices_send_heartbeats_in_the_mqtt_source_shape(
        mosquitto: MosquittoServer, raw_client: mqtt.Client) -> None:
    clock = FakeClock()
    options = SimulatorOptions(count=5, heartbeat_interval_s=10, group="north", telemetry=False)
    received = await collect(raw_client, "devices/+/heartbeat")
    async with DeviceSimulator(broker_of(mosquitto), options, logger=get_logger(test="sim"),
                               clock=clock) as fleet:
        fleet.devices["sim-00002"].go_silent(clock.monotonic(), 60)
        fleet.devices["sim-00004"].bricked = True
        beating = asyncio.create_task(fleet.run(rounds=1))
        for _ in range(10):
            await clock.until_sleeping(1)
            await clock.advance(1)
        await beating
        got = await drain(received, 3)
    assert sorted(topic for topic, _ in got) == [
        "devices/sim-00000/heartbeat", "devices/sim-00001/heartbeat",
        "devices/sim-00003/heartbeat"]
    assert all(body["nodeId"] == topic.split("/")[1] for topic, body in got)
    body = got[0][1]
    assert body["value"] == "alive"
    assert body["metadata"]["firmware_version"] == "1.0.0"
    assert body["metadata"]["group"] == "north"
    # The fake clock's time (it starts at 1,800,000,000 s), moved 1 s per slice.
    assert re.fullmatch(r"2027-01-15T08:00:0\d\.000Z", body["timestamp"]), body["timestamp"]


async def test_telemetry_is_a_reading_with_a_unit(
        mosquitto: MosquittoServer, raw_client: mqtt.Client) -> None:
    received = await collect(raw_client, "devices/+/telemetry")
    async with DeviceSimulator(broker_of(mosquitto), SimulatorOptions(count=2, seed=3),
                               logger=get_logger(test="sim")) as fleet:
        assert fleet.publish_heartbeats(fleet.devices) == 2
        got = await drain(received, 2)
    assert {body["nodeId"] for _, body in got} == {"sim-00000", "sim-00001"}
    assert all(isinstance(body["value"], float) and body["unit"] == "C" for _, body in got)


async def test_a_bricking_firmware_silences_the_device_for_good(
        mosquitto: MosquittoServer, channel: DeviceChannel) -> None:
    options = SimulatorOptions(count=3, brick_on=frozenset({"6.6.6"}))
    async with DeviceSimulator(broker_of(mosquitto), options,
                               logger=get_logger(test="sim")) as fleet:
        with pytest.raises(DeviceTimeoutError):
            await channel.request("sim-00001", "firmware_update", {"version": "6.6.6"},
                                  timeout_s=0.5)
        assert fleet.devices["sim-00001"].bricked
        assert fleet.publish_heartbeats(fleet.devices) == 2
        with pytest.raises(DeviceTimeoutError):
            await channel.request("sim-00001", "get_state", {}, timeout_s=0.3)
        # Told over MQTT: another device bricks on another version.
        await channel.request("sim-00002", "sim.brick_on", {"version": "2.0.0"}, timeout_s=5)
        assert (await channel.request("sim-00000", "firmware_update", {"version": "2.0.0"},
                                      timeout_s=5))["firmware_version"] == "2.0.0"


async def test_failing_self_tests_are_reported_after_an_update(
        mosquitto: MosquittoServer, channel: DeviceChannel) -> None:
    options = SimulatorOptions(count=2, fail_self_test=frozenset({"sim-00001"}))
    async with DeviceSimulator(broker_of(mosquitto), options, logger=get_logger(test="sim")):
        good = await channel.request("sim-00000", "firmware_update", {"version": "1.2.0"},
                                     timeout_s=5)
        bad = await channel.request("sim-00001", "firmware_update", {"version": "1.2.0"},
                                    timeout_s=5)
        assert good["self_test_passed"] is True
        assert bad["self_test_passed"] is False
        await channel.request("sim-00000", "sim.fail_self_test", {"fail": True}, timeout_s=5)
        assert (await channel.request("sim-00000", "self_test", {}, timeout_s=5))[
            "passed"] is False


def test_a_command_delivered_twice_is_applied_once_and_answered_alike() -> None:
    device = SimulatedDevice("meter-1")
    first = device.answer("c1", "firmware_update", {"version": "1.2.0"}, now_s=0)
    again = device.answer("c1", "firmware_update", {"version": "1.2.0"}, now_s=1)
    assert first == again
    assert device.firmware_updates == 1
    assert device.previous_version == "1.0.0"
    rolled = device.answer("c2", "firmware_update", {"version": "previous"}, now_s=2)
    assert rolled is not None and rolled["result"]["firmware_version"] == "1.0.0"


def test_bad_parameters_are_refused_by_name() -> None:
    device = SimulatedDevice("meter-1")
    answer = device.answer("c1", "firmware_update", {"version": 12}, now_s=0)
    assert answer == {"id": "c1", "ok": False, "code": "bad_params",
                      "error": "params.version: expected a string of 1-64 characters"}
    answer = device.answer("c2", "config_update", {"config": [1]}, now_s=0)
    assert answer is not None and answer["error"] == "params.config: expected an object"


async def test_a_malformed_command_is_counted_and_the_next_one_answered(
        mosquitto: MosquittoServer, raw_client: mqtt.Client, channel: DeviceChannel) -> None:
    async with DeviceSimulator(broker_of(mosquitto), SimulatorOptions(count=1),
                               logger=get_logger(test="sim")) as fleet:
        raw_client.publish("devices/sim-00000/cmd", b"\xff not json", qos=1)
        raw_client.publish("devices/sim-00000/cmd", json.dumps({"id": "x", "command": "reboot",
                                                                 "params": [1]}), qos=1)
        assert (await channel.request("sim-00000", "reboot", {}, timeout_s=5))["boot_count"] == 2
        assert fleet.commands_rejected == 2


@pytest.mark.slow
async def test_the_simulate_command_line_runs_devices_until_sigterm(
        mosquitto: MosquittoServer, channel: DeviceChannel) -> None:
    process = await asyncio.create_subprocess_exec(
        INSTALLED_CLI, "devices", "simulate", "--count", "3", "--broker",
        f"mqtt://127.0.0.1:{mosquitto.port}", "--heartbeat-interval-s", "1",
        "--brick-on", "9.9.9", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"simulating 3 devices")
        state = await channel.request("sim-00002", "get_state", {}, timeout_s=5)
        assert state["firmware_version"] == "1.0.0"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_simulate_command_line_refuses_a_bad_broker(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = run_fleet_command(["devices", "simulate", "--count", "3", "--broker",
                              "http://127.0.0.1:1"])
    assert code == 64
    assert "the scheme must be mqtt:// or mqtts://" in capsys.readouterr().err


@pytest.mark.slow
async def test_the_simulate_command_line_says_when_the_broker_is_gone() -> None:
    # A process of its own: the command configures the process's logging.
    process = await asyncio.create_subprocess_exec(
        INSTALLED_CLI, "devices", "simulate", "--count", "2", "--broker",
        f"mqtt://127.0.0.1:{free_port()}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 69
    assert b"cannot connect" in err
