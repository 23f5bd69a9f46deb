"""A small MAVLink vehicle for tests and benchmarks, on 127.0.0.1 (UDP, a port the
kernel picks), built on pymavlink's codec: it speaks the mission protocol (upload and
download), answers MAV_CMD_REQUEST_MESSAGE for MISSION_CURRENT and
GLOBAL_POSITION_INT, and can misbehave:

* ``normal``;
* ``drop``: loses its first MISSION_REQUEST_INT for item 1 (as a radio link
  does); it asks again when the ground station repeats item 0;
* ``nack``: answers MISSION_COUNT with MISSION_ACK ``nack_result``;
* ``silent``: hears everything, answers nothing (gone, or a dead radio);
* ``forget``: completes the upload (MISSION_ACK accepted) but keeps its old
  mission (a write that does not stick);
* ``noise``: before each answer, sends garbage and a MISSION_ACK from another
  system id, which the ground station must ignore.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from pymavlink.dialects.v20 import common as mavlink

Mode = Literal["normal", "drop", "nack", "silent", "forget", "noise"]


@dataclass
class _Transfer:
    count: int
    items: dict[int, Any] = field(default_factory=dict)


class MavlinkVehicle(asyncio.DatagramProtocol):
    """``async with MavlinkVehicle() as vehicle: vehicle.port``."""

    def __init__(self, mode: Mode = "normal", *, system_id: int = 1, component_id: int = 1,
                 nack_result: int = mavlink.MAV_MISSION_NO_SPACE,
                 position: tuple[float, float, float] = (48.8584, 2.2945, 12.5)) -> None:
        self.mode = mode
        self.host = "127.0.0.1"
        self.port = 0
        self.codec = mavlink.MAVLink(None, srcSystem=system_id, srcComponent=component_id)
        self.codec.robust_parsing = True
        self.stranger = mavlink.MAVLink(None, srcSystem=system_id + 1, srcComponent=component_id)
        self.nack_result = nack_result
        self.position = position
        self.mission: list[Any] = []
        self.current_seq = 0
        self.uploads = 0  # missions completed (accepted), stored or not
        self.received: list[str] = []
        self._transfer: _Transfer | None = None
        self._dropped = False
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> MavlinkVehicle:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, 0))
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def waypoints(self) -> list[tuple[int, float, float, float]]:
        """What the vehicle holds: (command, lat, lon, alt) per item."""
        return [(m.command, m.x / 1e7, m.y / 1e7, round(m.z, 3)) for m in self.mission]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for message in self.codec.parse_buffer(data) or ():
            if message.get_type() == "BAD_DATA":
                continue
            self.received.append(message.get_type())
            if self.mode != "silent":
                self._handle(message, addr)

    def _send(self, message: Any, addr: Any) -> None:
        if self._transport is None:
            return
        if self.mode == "noise":
            self._transport.sendto(b"\xfd\x09garbage-not-mavlink", addr)
            self._transport.sendto(self.stranger.mission_ack_encode(
                255, 0, mavlink.MAV_MISSION_ACCEPTED).pack(self.stranger), addr)
        self._transport.sendto(message.pack(self.codec), addr)

    def _handle(self, message: Any, addr: Any) -> None:
        kind = message.get_type()
        if kind == "MISSION_COUNT":
            self._start_upload(message.count, addr)
        elif kind == "MISSION_ITEM_INT":
            self._take_item(message, addr)
        elif kind == "MISSION_REQUEST_LIST":
            self._send(self.codec.mission_count_encode(255, 0, len(self.mission)), addr)
        elif kind == "MISSION_REQUEST_INT" and message.seq < len(self.mission):
            self._send(self._stored(message.seq), addr)
        elif kind == "COMMAND_LONG" and message.command == mavlink.MAV_CMD_REQUEST_MESSAGE:
            self._answer_request(int(message.param1), addr)

    def _start_upload(self, count: int, addr: Any) -> None:
        if self.mode == "nack":
            self._send(self.codec.mission_ack_encode(255, 0, self.nack_result), addr)
            return
        self._transfer = _Transfer(count)
        if count == 0:
            self._finish(addr)
        else:
            self._request(0, addr)

    def _take_item(self, item: Any, addr: Any) -> None:
        transfer = self._transfer
        if transfer is None:
            # The ground station did not hear our ACK and repeats the last item.
            if self.mission and item.seq == len(self.mission) - 1:
                self._send(self.codec.mission_ack_encode(
                    255, 0, mavlink.MAV_MISSION_ACCEPTED), addr)
            return
        transfer.items[item.seq] = item
        following = item.seq + 1
        if following == transfer.count:
            self._finish(addr)
        else:
            self._request(following, addr)

    def _request(self, seq: int, addr: Any) -> None:
        if self.mode == "drop" and seq == 1 and not self._dropped:
            self._dropped = True
            return
        self._send(self.codec.mission_request_int_encode(255, 0, seq), addr)

    def _finish(self, addr: Any) -> None:
        assert self._transfer is not None
        transfer, self._transfer = self._transfer, None
        if self.mode != "forget":
            self.mission = [transfer.items[seq] for seq in range(transfer.count)]
            self.current_seq = 0
        self.uploads += 1
        self._send(self.codec.mission_ack_encode(255, 0, mavlink.MAV_MISSION_ACCEPTED), addr)

    def _stored(self, seq: int) -> Any:
        m = self.mission[seq]
        return self.codec.mission_item_int_encode(
            255, 0, seq, m.frame, m.command, int(seq == self.current_seq), m.autocontinue,
            m.param1, m.param2, m.param3, m.param4, m.x, m.y, m.z)

    def _answer_request(self, message_id: int, addr: Any) -> None:
        if message_id == mavlink.MAVLINK_MSG_ID_MISSION_CURRENT:
            total = len(self.mission) if self.mission else 65535
            self._send(self.codec.mission_current_encode(self.current_seq, total), addr)
        elif message_id == mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT:
            lat, lon, alt_m = self.position
            self._send(self.codec.global_position_int_encode(
                0, round(lat * 1e7), round(lon * 1e7), round(alt_m * 1000),
                round(alt_m * 1000), 0, 0, 0, 0), addr)
