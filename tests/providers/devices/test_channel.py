"""The device command/response channel on a real Mosquitto, with simulated devices
and hostile ones (wrong ids, garbage, silence, a broker that goes away)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from paho.mqtt import client as mqtt

from framework.core import get_logger
from framework.testing import MosquittoServer, free_port
from providers.devices import (
    ChannelLimits,
    DeviceBroker,
    DeviceChannel,
    DeviceLinkError,
    DeviceRefusedError,
    DeviceSimulator,
    DeviceTimeoutError,
    InvalidDeviceRequestError,
)
from tests.providers.devices.conftest import broker_of


async def test_a_request_gets_the_devices_result(channel: DeviceChannel,
                                                 simulator: DeviceSimulator) -> None:
    state = await channel.request("sim-00003", "get_state", {}, timeout_s=5)
    assert state["deviceId"] == "sim-00003"
    assert state["firmware_version"] == "1.0.0"
    updated = await channel.request("sim-00003", "firmware_update", {"version": "1.2.0"},
                                    timeout_s=5)
    assert updated["firmware_version"] == "1.2.0"
    assert updated["previous_version"] == "1.0.0"
    assert simulator.devices["sim-00003"].firmware_version == "1.2.0"
    assert simulator.devices["sim-00004"].firmware_version == "1.0.0"


async def test_concurrent_requests_share_one_connection_within_the_in_flight_bound(
        channel: DeviceChannel, simulator: DeviceSimulator) -> None:
    peak = 0

    async def one(index: int) -> str:
        nonlocal peak
        task = asyncio.create_task(channel.request(f"sim-{index % 20:05d}", "reboot", {},
                                                   timeout_s=20))
        await asyncio.sleep(0)
        peak = max(peak, channel.in_flight)
        await task
        return f"sim-{index % 20:05d}"

    done = await asyncio.gather(*(one(index) for index in range(200)))
    assert len(done) == 200
    assert 0 < peak <= 16  # ChannelLimits(max_in_flight=16) in the fixture
    assert sum(device.boot_count - 1 for device in simulator.devices.values()) == 200
    assert channel.in_flight == 0


@pytest.mark.parametrize("device_id", [
    "a/b", "+", "#", "", "x\x00y", "../cmd", "sim-1/#", "-leading-dash", "x" * 129, 42, None])
async def test_a_device_id_that_is_not_one_topic_level_is_refused_before_sending(
        channel: DeviceChannel, device_id: object) -> None:
    with pytest.raises(InvalidDeviceRequestError, match="device id"):
        await channel.request(device_id, "reboot", {}, timeout_s=1)  # type: ignore[arg-type]
    assert channel.in_flight == 0


async def test_bad_commands_params_and_timeouts_are_named(channel: DeviceChannel) -> None:
    with pytest.raises(InvalidDeviceRequestError, match="device command 'Reboot/now'"):
        await channel.request("sim-00001", "Reboot/now", {}, timeout_s=1)
    with pytest.raises(InvalidDeviceRequestError, match="params are not JSON"):
        await channel.request("sim-00001", "reboot", {"when": object()}, timeout_s=1)
    with pytest.raises(InvalidDeviceRequestError, match="over 65536"):
        await channel.request("sim-00001", "config_update", {"config": {"x": "y" * 70_000}},
                              timeout_s=1)
    with pytest.raises(InvalidDeviceRequestError, match="timeout_s must be in"):
        await channel.request("sim-00001", "reboot", {}, timeout_s=0)


async def test_a_refusal_carries_the_devices_error_and_code(
        channel: DeviceChannel, simulator: DeviceSimulator) -> None:
    with pytest.raises(DeviceRefusedError, match="sim-00002 refused: unknown command") as info:
        await channel.request("sim-00002", "launch_rocket", {}, timeout_s=5)
    assert info.value.code == "unknown_command"
    with pytest.raises(DeviceRefusedError, match="no previous firmware") as info:
        await channel.request("sim-00002", "firmware_update", {"version": "previous"},
                              timeout_s=5)
    assert info.value.code == "no_previous"


async def test_a_silent_device_times_out_and_its_late_answer_is_dropped(
        channel: DeviceChannel, simulator: DeviceSimulator) -> None:
    await channel.request("sim-00005", "sim.go_silent", {"seconds": 0.5}, timeout_s=5)
    started = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match="sim-00005: no answer to reboot within 0.3 s"):
        await channel.request("sim-00005", "reboot", {}, timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert channel.in_flight == 0
    # Another device is not held up by the silent one.
    assert (await channel.request("sim-00006", "self_test", {}, timeout_s=5))["passed"] is True


async def test_answers_from_the_wrong_device_garbage_and_huge_ones_are_ignored(
        mosquitto: MosquittoServer, raw_client: mqtt.Client) -> None:
    """A hostile "device" sees the command and answers with the right correlation id
    on another device's topic, with garbage, and with a huge body, before the real
    answer: only the real answer resolves the request."""
    limits = ChannelLimits(max_response_bytes=4096)
    async with DeviceChannel(broker_of(mosquitto), logger=get_logger(test="hostile"),
                             limits=limits) as channel:
        seen: asyncio.Queue[bytes] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        raw_client.on_message = lambda _c, _u, message: loop.call_soon_threadsafe(
            seen.put_nowait, bytes(message.payload))
        raw_client.subscribe("devices/meter-7/cmd", qos=1)
        await asyncio.sleep(0.2)  # the SUBACK
        request = asyncio.create_task(channel.request("meter-7", "get_state", {}, timeout_s=5))
        command = json.loads(await asyncio.wait_for(seen.get(), 5))
        correlation = command["id"]
        for topic, body in [
            ("devices/meter-8/res", json.dumps({"id": correlation, "ok": True,
                                                "result": {"forged": True}})),
            ("devices/meter-7/res", "not json {"),
            ("devices/meter-7/res", json.dumps({"id": correlation, "ok": True,
                                                "result": {"x": "y" * 10_000}})),
            ("devices/meter-7/extra/res", json.dumps({"id": correlation, "ok": True})),
            ("devices/meter-7/res", json.dumps({"id": correlation, "ok": True,
                                                "result": {"real": True}})),
        ]:
            raw_client.publish(topic, body, qos=1)
        assert await request == {"real": True}
        assert channel.unmatched == 1
        assert channel.malformed == 1  # the huge one never reaches us: over MaximumPacketSize


async def test_no_broker_fails_start_within_the_connect_timeout() -> None:
    broker = DeviceBroker.model_validate({"broker": f"mqtt://127.0.0.1:{free_port()}",
                                          "connect_timeout_s": 1})
    channel = DeviceChannel(broker, logger=get_logger(test="gone"))
    started = time.monotonic()
    with pytest.raises(DeviceLinkError, match="cannot connect|not connected"):
        await channel.start()
    assert time.monotonic() - started < 5


@pytest.mark.slow
async def test_a_request_during_a_broker_restart_waits_for_the_reconnect(
        mosquitto: MosquittoServer, channel: DeviceChannel, simulator: DeviceSimulator) -> None:
    await asyncio.to_thread(mosquitto.stop)
    with pytest.raises(DeviceTimeoutError, match="no answer to reboot within 0.5 s"):
        await channel.request("sim-00001", "reboot", {}, timeout_s=0.5)
    waiting = asyncio.create_task(channel.request("sim-00001", "get_state", {}, timeout_s=30))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # not failed at once: the broker is only restarting
    await asyncio.to_thread(mosquitto.start)
    state = await waiting
    assert state["deviceId"] == "sim-00001" and state["boot_count"] == 1


async def test_a_request_waiting_for_the_link_fails_when_the_channel_stops(
        mosquitto: MosquittoServer) -> None:
    channel = DeviceChannel(broker_of(mosquitto), logger=get_logger(test="stop"))
    await channel.start()
    await asyncio.to_thread(mosquitto.stop)
    waiting = asyncio.create_task(channel.request("sim-00001", "get_state", {}, timeout_s=30))
    await asyncio.sleep(0.3)
    await channel.stop()
    with pytest.raises(DeviceLinkError, match="stopped"):
        await asyncio.wait_for(waiting, 5)
