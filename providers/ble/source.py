"""The ``ble-scanner`` push source: a BlueZ scan (bleak) whose advertisements pass the
per-device throttle (:mod:`providers.ble.readings`), plus the values of the chosen
GATT characteristics (:mod:`providers.ble.gatt`).

Advertisements have no position to resume from: nothing is saved but what the
stream holds. What was received and not yet appended when the process dies is
gone with it, and comes again with the device's next advertisement; the throttle
starts empty, so each device is published once more after a restart or a lost lease.

The adapter is checked at start and every ``adapterCheckMs`` while scanning, over
BlueZ's D-Bus API: an adapter that is missing or powered off fails the window with
an error naming it, the scan is stopped, and the next window starts it again (so
the scan resumes by itself when the adapter is back). Every call to BlueZ has the
connector's ``requestTimeoutMs`` as its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from typing import Any

from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from framework.core import Clock, Logger, SourceError
from framework.polling import Batch, ConnectorConfig
from providers.ble.config import BleScannerConfig, Characteristic
from providers.ble.gatt import DeviceLink
from providers.ble.readings import (
    Advertisement,
    CharacteristicValue,
    DeviceThrottle,
    Reading,
    ThrottleRules,
)


class BleSource:
    """A :class:`~framework.polling.PushSource` of advertisements and values."""

    def __init__(self, config: ConnectorConfig, settings: BleScannerConfig, clock: Clock,
                 logger: Logger) -> None:
        self._name = config.name
        self._settings = settings
        self._deadline_s = config.request_timeout_ms / 1000
        self._clock = clock
        self._log = logger
        self._rules = ThrottleRules(settings.min_interval_ms / 1000,
                                    settings.republish_after_ms / 1000,
                                    settings.rssi_step_dbm, settings.max_devices)
        self._throttle = DeviceThrottle(self._rules)
        self._values: deque[CharacteristicValue] = deque()
        self._dropped_values = 0
        self._wake = asyncio.Event()
        self._scanner: BleakScanner | None = None
        self._bus: MessageBus | None = None
        self._links: dict[str, DeviceLink] = {}
        self._wanted = {c.address for c in settings.characteristics}
        self._allowed = set(settings.addresses) | self._wanted if settings.addresses else set()
        self._next_check_s = 0.0

    async def start(self, positions: Mapping[str, str]) -> None:
        self._throttle = DeviceThrottle(self._rules)  # each device published once more
        self._bus = await self._within_deadline(
            MessageBus(bus_type=BusType.SYSTEM).connect(), "connect to the system D-Bus")
        await self._check_adapter()
        settings = self._settings
        bluez: dict[str, Any] = {"adapter": settings.interface}
        if settings.passive_patterns:
            bluez["or_patterns"] = [
                OrPattern(p.start, AdvertisementDataType(p.ad_type), bytes.fromhex(p.data_hex))
                for p in settings.passive_patterns]
        self._scanner = BleakScanner(self._on_advertisement,
                                     service_uuids=settings.service_uuids or None,
                                     scanning_mode=settings.scan_mode, bluez=bluez)  # type: ignore[arg-type]  # a TypedDict built field by field
        await self._within_deadline(self._scanner.start(), "start scanning")
        self._next_check_s = self._clock.monotonic() + settings.adapter_check_ms / 1000
        self._log.info("ble_scan_started", interface=settings.interface,
                       mode=settings.scan_mode, service_uuids=settings.service_uuids)

    def _on_advertisement(self, device: BLEDevice, data: AdvertisementData) -> None:
        address = device.address.upper()
        if self._scanner is None:
            return  # stopping: a late report must not open a new link
        if self._allowed and address not in self._allowed:
            return
        wanted = self._settings.service_uuids
        if wanted and not set(wanted) & {uuid.lower() for uuid in data.service_uuids}:
            return  # BlueZ filters too, but a filter set by another client may be wider
        self._throttle.offer(Advertisement(
            address=address, rssi=data.rssi, name=data.local_name, tx_power=data.tx_power,
            manufacturer_data=dict(data.manufacturer_data),
            service_data={uuid.lower(): bytes(value) for uuid, value in data.service_data.items()},
            service_uuids=tuple(uuid.lower() for uuid in data.service_uuids),
            received_at_s=self._clock.time()))
        if address in self._wanted and address not in self._links:
            self._link(device, [c for c in self._settings.characteristics
                                if c.address == address])
        self._wake.set()

    def _link(self, device: BLEDevice, characteristics: list[Characteristic]) -> None:
        link = DeviceLink(device, characteristics, deliver=self._deliver,
                          deadline_s=self._deadline_s, clock=self._clock, logger=self._log)
        self._links[device.address.upper()] = link
        link.start()

    def _deliver(self, value: CharacteristicValue) -> None:
        if len(self._values) >= self._settings.max_pending_values:
            # Only while the stream cannot take them (Redis down): the newest are kept.
            self._values.popleft()
            self._dropped_values += 1
            if self._dropped_values in (1, 10, 100) or self._dropped_values % 1000 == 0:
                self._log.warning("ble_values_dropped", dropped=self._dropped_values,
                                  max_pending_values=self._settings.max_pending_values)
        self._values.append(value)
        self._wake.set()

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Reading]:
        ends_s = self._clock.monotonic() + wait_s
        while True:
            now_s = self._clock.monotonic()
            if now_s >= self._next_check_s:
                await self._check_adapter()
                self._next_check_s = now_s + self._settings.adapter_check_ms / 1000
            readings: list[Reading] = []
            while self._values and len(readings) < max_messages:
                readings.append(self._values.popleft())
            readings += self._throttle.take_due(now_s, max_messages - len(readings))
            if readings:
                return Batch(readings)
            if now_s >= ends_s:
                return Batch()
            self._wake.clear()
            next_due_s = self._throttle.next_due_s(now_s)
            wait = min(ends_s, self._next_check_s) - now_s
            if next_due_s is not None:
                wait = min(wait, next_due_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wait))

    async def _check_adapter(self) -> None:
        """Raises SourceError when the adapter is missing or powered off."""
        interface = self._settings.interface
        if self._bus is None:
            raise SourceError("BLE source is stopped", connector=self._name)
        reply = await self._within_deadline(self._bus.call(Message(
            destination="org.bluez", path=f"/org/bluez/{interface}",
            interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
            body=["org.bluez.Adapter1", "Powered"])), f"ask BlueZ about adapter {interface}")
        if reply is None or reply.message_type == MessageType.ERROR:
            reason = reply.error_name if reply is not None else "no reply"
            raise SourceError(f"Bluetooth adapter {interface} not found (BlueZ: {reason})",
                              connector=self._name)
        if not reply.body[0].value:
            raise SourceError(f"Bluetooth adapter {interface} is powered off",
                              connector=self._name)

    async def acknowledge(self, batch: Batch[Reading]) -> None:
        """Nothing to tell a radio: appended is done."""

    async def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            with contextlib.suppress(Exception):  # the adapter or BlueZ may be gone
                await self._within_deadline(scanner.stop(), "stop scanning")
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.stop()
        self._throttle.forget_pending()
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
        self._log.info("ble_scan_stopped", interface=self._settings.interface)

    async def _within_deadline(self, call: Any, what: str) -> Any:
        try:
            async with asyncio.timeout(self._deadline_s):
                return await call
        except TimeoutError:
            raise SourceError(f"BLE: could not {what} within requestTimeoutMs",
                              connector=self._name) from None
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"BLE: could not {what}: {type(exc).__name__}: {exc}",
                              connector=self._name) from None
