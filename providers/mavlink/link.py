"""One MAVLink 2 conversation with one vehicle over UDP, on the running event loop.

pymavlink's ``mavutil`` connections block; here only its generated codec is used
(``pymavlink.dialects.v20.common.MAVLink``: pack and parse), over an asyncio
datagram endpoint *connected* to the vehicle's address, so the kernel drops
datagrams from any other sender. What arrives is parsed robustly (bad CRCs and
garbage are skipped), kept only when it comes from the configured system and
component, and queued up to a bound: a chatty or hostile peer cannot grow memory.
An ICMP "port unreachable" (nothing listens there) ends the wait at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Any

from pymavlink.dialects.v20 import common as mavlink

from framework.core import TransientSourceError
from providers.mavlink.params import VehicleAddress

# The ids a ground control station uses (MAV_COMP_ID_MISSIONPLANNER).
GCS_SYSTEM_ID = 255
GCS_COMPONENT_ID = 190
_QUEUE_LIMIT = 1000
_MAX_DATAGRAM_BYTES = 2048  # a MAVLink 2 frame is at most 280 bytes


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.arrived: deque[bytes | Exception] = deque(maxlen=_QUEUE_LIMIT)
        self.wake = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) <= _MAX_DATAGRAM_BYTES:
            self.arrived.append(data)
            self.wake.set()

    def error_received(self, exc: Exception) -> None:
        self.arrived.append(exc)
        self.wake.set()


class MavlinkLink:
    """``async with MavlinkLink(vehicle) as link: link.send(...); await link.expect(...)``."""

    def __init__(self, vehicle: VehicleAddress) -> None:
        self.vehicle = vehicle
        self.codec = mavlink.MAVLink(None, srcSystem=GCS_SYSTEM_ID, srcComponent=GCS_COMPONENT_ID)
        self.codec.robust_parsing = True
        self._protocol = _Datagrams()
        self._transport: asyncio.DatagramTransport | None = None
        self._parsed: deque[Any] = deque(maxlen=_QUEUE_LIMIT)

    async def __aenter__(self) -> MavlinkLink:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: self._protocol, remote_addr=(self.vehicle.host, self.vehicle.port))
        except OSError as exc:
            raise TransientSourceError(f"drone_waypoint: cannot reach vehicle "
                                       f"{self.vehicle.target}: {exc}") from exc
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._transport is not None:
            self._transport.close()

    def send(self, message: Any) -> None:
        assert self._transport is not None, "send() outside async with"
        self._transport.sendto(message.pack(self.codec))

    async def expect(self, types: frozenset[str], timeout_s: float) -> Any | None:
        """The next message of one of ``types`` from the vehicle, or None after
        ``timeout_s`` of nothing useful."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while True:
            message = self._next_parsed(types)
            if message is not None:
                return message
            remaining = until - loop.time()
            if remaining <= 0:
                return None
            self._protocol.wake.clear()
            try:
                # A timeout context, not wait_for: no task per message.
                async with asyncio.timeout(remaining):
                    await self._protocol.wake.wait()
            except TimeoutError:
                return None

    def _next_parsed(self, types: frozenset[str]) -> Any | None:
        while self._protocol.arrived:
            data = self._protocol.arrived.popleft()
            if isinstance(data, Exception):
                raise TransientSourceError(f"drone_waypoint: vehicle {self.vehicle.target} "
                                           f"is not listening: {data}")
            try:
                self._parsed.extend(self.codec.parse_buffer(data) or ())
            except Exception:  # pymavlink's MAVError and worse: garbage is skipped
                self.codec.buf = bytearray()
        while self._parsed:
            message = self._parsed.popleft()
            if message.get_type() in types and self._from_vehicle(message):
                return message
        return None

    def _from_vehicle(self, message: Any) -> bool:
        return bool(message.get_srcSystem() == self.vehicle.system_id
                    and message.get_srcComponent() == self.vehicle.component_id
                    and getattr(message, "target_system", GCS_SYSTEM_ID) in (0, GCS_SYSTEM_ID))
