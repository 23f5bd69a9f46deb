"""Connect-and-read and notify of chosen GATT characteristics, one task per device.

A device's task starts when the scan first sees it (bleak connects through the
device object the scan found). It connects within ``requestTimeoutMs``, subscribes
to its ``notify`` characteristics, reads its ``read`` ones at once and then every
``intervalMs``, each read within the same deadline. A failure (refused, out of
range, a read that does not answer) is logged with the device and characteristic,
the link is closed, and the task connects again after a backoff (1 s doubling to
60 s); the other devices' tasks are not affected. A value over 512 bytes (more than
ATT allows) is passed on as is and rejected as an event with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from bleak import BleakClient
from bleak.backends.device import BLEDevice

from framework.core import Clock, Logger, cancel_and_wait
from providers.ble.config import Characteristic
from providers.ble.readings import CharacteristicValue

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0

Deliver = Callable[[CharacteristicValue], None]


class DeviceLink:
    """The GATT work for one device (see the module docstring)."""

    def __init__(self, device: BLEDevice, characteristics: Sequence[Characteristic], *,
                 deliver: Deliver, deadline_s: float, clock: Clock, logger: Logger) -> None:
        self._device = device
        self._reads = [c for c in characteristics if c.mode == "read"]
        self._notifies = [c for c in characteristics if c.mode == "notify"]
        self._deliver = deliver
        self._deadline_s = deadline_s
        self._clock = clock
        self._log = logger.bind(address=device.address)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ble-link:{self._device.address}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while True:
            try:
                await self._session()
                backoff_s = BACKOFF_FIRST_S  # it held and then dropped: reconnect soon
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("ble_link_failed", error=_describe(exc), retry_in_s=backoff_s)
            await self._clock.sleep(backoff_s)
            backoff_s = min(BACKOFF_MAX_S, backoff_s * 2)

    async def _session(self) -> None:
        disconnected = asyncio.Event()
        client = BleakClient(self._device, timeout=self._deadline_s,
                             disconnected_callback=lambda _client: disconnected.set())
        try:
            async with asyncio.timeout(self._deadline_s * 2):  # connect + service discovery
                await client.connect()
            self._log.info("ble_link_connected")
            for characteristic in self._notifies:
                await self._within_deadline(client.start_notify(
                    characteristic.uuid, self._on_notify(characteristic)))
            await self._read_until_disconnected(client, disconnected)
            self._log.warning("ble_link_disconnected")
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._deadline_s):
                    await client.disconnect()

    async def _read_until_disconnected(self, client: BleakClient,
                                       disconnected: asyncio.Event) -> None:
        next_read_s = {characteristic.uuid: 0.0 for characteristic in self._reads}
        while not disconnected.is_set():
            now_s = self._clock.monotonic()
            for characteristic in self._reads:
                if now_s >= next_read_s[characteristic.uuid]:
                    data = await self._within_deadline(client.read_gatt_char(
                        characteristic.uuid))
                    self._deliver(CharacteristicValue(
                        self._device.address, characteristic.uuid, "read", bytes(data),
                        self._clock.time()))
                    next_read_s[characteristic.uuid] = now_s + characteristic.interval_ms / 1000
            wait_s = min(next_read_s.values(), default=now_s + 60.0) - self._clock.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(disconnected.wait(), max(0.0, wait_s))

    def _on_notify(self, characteristic: Characteristic) -> Callable[[Any, bytearray], None]:
        def on_notify(_sender: Any, data: bytearray) -> None:
            self._deliver(CharacteristicValue(self._device.address, characteristic.uuid,
                                              "notify", bytes(data), self._clock.time()))
        return on_notify

    async def _within_deadline(self, call: Any) -> Any:
        async with asyncio.timeout(self._deadline_s):
            return await call


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within requestTimeoutMs"
    return f"{type(exc).__name__}: {exc}"
