"""N simulated devices in one process, over one MQTT connection.

Each live device publishes a heartbeat to ``devices/{id}/heartbeat`` and a reading
to ``devices/{id}/telemetry`` (QoS 0, spread over the interval) in the shape the
``mqtt-source`` connector reads (``value``, ``nodeId`` = the device id,
``timestamp``, ``metadata``), and answers the commands of
:mod:`providers.devices.simulator_device` sent on ``devices/{id}/cmd``. Commands to
ids it does not simulate are ignored (another simulator may own them).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from framework.core import Clock, Logger, SystemClock, iso_utc
from providers.devices.channel_broker import DeviceBroker
from providers.devices.channel_link import MqttLink
from providers.devices.channel_topics import TOPIC_ROOT, check_device_id, device_of
from providers.devices.simulator_device import SimulatedDevice
from providers.devices.simulator_extras import assign_mesh

MAX_COMMAND_BYTES = 64 * 1024
# The devices' session outlives a reconnect (commands wait at the broker meanwhile).
SESSION_EXPIRY_S = 3600
# Heartbeats published between two looks at the commands (100,000 devices: 10,000 a
# slice would hold the loop for seconds).
HEARTBEAT_CHUNK = 500


@dataclass(frozen=True)
class SimulatorOptions:
    """``count`` devices named ``{prefix}-00000``...; ``brick_on``: firmware versions
    that brick every device; ``fail_self_test``: ids whose self-tests fail."""

    count: int
    prefix: str = "sim"
    firmware_version: str = "1.0.0"
    heartbeat_interval_s: float = 30.0
    telemetry: bool = True
    brick_on: frozenset[str] = frozenset()
    fail_self_test: frozenset[str] = frozenset()
    group: str | None = None
    seed: int | None = None

    def device_ids(self) -> list[str]:
        width = max(5, len(str(self.count - 1)))
        return [check_device_id(f"{self.prefix}-{index:0{width}d}") for index in range(self.count)]


class DeviceSimulator:
    """``async with DeviceSimulator(broker, options, logger=...) as fleet:``
    ``fleet.devices[id]`` to inject faults; ``await fleet.run()`` to send heartbeats."""

    def __init__(self, broker: DeviceBroker, options: SimulatorOptions, *, logger: Logger,
                 clock: Clock | None = None) -> None:
        if options.count < 1:
            raise ValueError(f"simulator count: expected >= 1, got {options.count}")
        self._options = options
        self._log = logger
        self._clock = clock or SystemClock()
        self._random = random.Random(options.seed)
        self.devices: dict[str, SimulatedDevice] = {
            device_id: SimulatedDevice(
                device_id, firmware_version=options.firmware_version,
                brick_on=set(options.brick_on), fail_self_test=device_id in options.fail_self_test)
            for device_id in options.device_ids()}
        assign_mesh(self.devices)
        self._link = MqttLink(
            broker, client_id=f"connector-fleet-simulator-{uuid.uuid4().hex[:12]}",
            topics=[f"{TOPIC_ROOT}/+/cmd"], on_messages=self._on_commands, logger=logger,
            max_message_bytes=MAX_COMMAND_BYTES, session_expiry_s=SESSION_EXPIRY_S)
        self.commands_answered = 0
        self.commands_rejected = 0

    async def start(self) -> None:
        await self._link.start()
        self._log.info("device_simulator_started", count=len(self.devices))

    async def stop(self) -> None:
        await self._link.stop()

    async def __aenter__(self) -> DeviceSimulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def run(self, rounds: int | None = None) -> None:
        """Heartbeats (and telemetry) every interval, spread in ten slices; ``rounds``
        ends it (tests), else it runs until cancelled."""
        ids = list(self.devices)
        slices = 10
        done = 0
        while rounds is None or done < rounds:
            for part in range(slices):
                due = ids[part::slices]
                for start in range(0, len(due), HEARTBEAT_CHUNK):
                    self.publish_heartbeats(due[start:start + HEARTBEAT_CHUNK])
                    await asyncio.sleep(0)  # commands are answered between chunks
                await self._clock.sleep(self._options.heartbeat_interval_s / slices)
            done += 1

    def silence(self, device_id: str, seconds: float) -> None:
        """``device_id`` sends and answers nothing for ``seconds`` (on this clock)."""
        self.devices[device_id].go_silent(self._clock.monotonic(), seconds)

    def publish_heartbeats(self, device_ids: Iterable[str]) -> int:
        """One heartbeat (and reading) per live device among ``device_ids``; how many."""
        now_s, sent = self._clock.monotonic(), 0
        stamp = iso_utc(self._clock.time())
        for device_id in device_ids:
            device = self.devices[device_id]
            if device.is_silent(now_s):
                continue
            self._link.publish(f"{TOPIC_ROOT}/{device_id}/heartbeat", self._heartbeat(
                device, stamp), qos=0)
            if self._options.telemetry:
                self._link.publish(f"{TOPIC_ROOT}/{device_id}/telemetry", self._reading(
                    device, stamp), qos=0)
            sent += 1
        return sent

    def _heartbeat(self, device: SimulatedDevice, stamp: str) -> bytes:
        metadata = {"kind": "heartbeat", "firmware_version": device.firmware_version,
                    "self_test_passed": device.self_test_passed, "boot_count": device.boot_count}
        if self._options.group:
            metadata["group"] = self._options.group
        return json.dumps({"value": "alive", "nodeId": device.device_id, "timestamp": stamp,
                           "metadata": metadata}).encode()

    def _reading(self, device: SimulatedDevice, stamp: str) -> bytes:
        value = round(20 + self._random.gauss(0, 2), 2)
        return json.dumps({"value": value, "unit": "C", "nodeId": device.device_id,
                           "timestamp": stamp, "metadata": {"kind": "telemetry"}}).encode()

    # -- commands (on the event loop, in bursts) ----------------------------------------

    def _on_commands(self, burst: list[tuple[str, bytes]]) -> None:
        now_s = self._clock.monotonic()
        for topic, payload in burst:
            self._on_command(topic, payload, now_s)

    def _on_command(self, topic: str, payload: bytes, now_s: float) -> None:
        device_id = device_of(topic)
        device = self.devices.get(device_id) if device_id else None
        if device is None:
            return  # not one of ours
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            body = None
        if (not isinstance(body, dict) or not isinstance(body.get("id"), str)
                or not isinstance(body.get("command"), str)
                or not isinstance(body.get("params", {}), dict)):
            self.commands_rejected += 1
            self._log.warning("device_command_malformed", device_id=device_id, size=len(payload))
            return
        answer = device.answer(body["id"][:64], body["command"], body.get("params", {}), now_s)
        if answer is None:
            return
        self.commands_answered += 1
        self._link.publish(f"{TOPIC_ROOT}/{device.device_id}/res",
                           json.dumps(answer, separators=(",", ":")).encode(), qos=1)
