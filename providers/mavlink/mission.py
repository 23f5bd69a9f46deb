"""The MAVLink mission protocol, ground station side: upload, download, and one-off
message requests (MISSION_CURRENT, GLOBAL_POSITION_INT).

Upload: MISSION_COUNT → the vehicle asks for each item (MISSION_REQUEST_INT, or
the older MISSION_REQUEST) → MISSION_ITEM_INT → MISSION_ACK. The vehicle drives
the transfer; when it stays silent for one message timeout we send our last
message again (MISSION_COUNT, or the last item asked for), as the protocol's
timeouts and retries say, up to ``retries`` times in a row. A vehicle that keeps
asking for items without ever finishing is cut by the caller's total deadline.
A MISSION_ACK with an error ends the transfer: its MAV_MISSION_RESULT is named.
"""

from __future__ import annotations

from typing import Any

from pymavlink.dialects.v20 import common as mavlink

from framework.core import MalformedResponseError, PermanentSourceError, TransientSourceError
from providers.mavlink.link import MavlinkLink
from providers.mavlink.params import MAX_WAYPOINTS, Frame, Waypoint

MISSION_TYPE = mavlink.MAV_MISSION_TYPE_MISSION
_REQUESTS = frozenset({"MISSION_REQUEST_INT", "MISSION_REQUEST", "MISSION_ACK"})
# The vehicle says "not now" (another transfer interrupted this one): worth a retry.
_TRANSIENT_RESULTS = frozenset({mavlink.MAV_MISSION_OPERATION_CANCELLED})
_COMMANDS = {"waypoint": mavlink.MAV_CMD_NAV_WAYPOINT,
             "takeoff": mavlink.MAV_CMD_NAV_TAKEOFF,
             "land": mavlink.MAV_CMD_NAV_LAND,
             "loiter_time": mavlink.MAV_CMD_NAV_LOITER_TIME,
             "return_to_launch": mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH}
_COMMAND_NAMES = {number: name for name, number in _COMMANDS.items()}
_FRAMES: dict[Frame, int] = {"relative": mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
           "global": mavlink.MAV_FRAME_GLOBAL_INT}
_FRAME_NAMES: dict[int, Frame] = {number: name for name, number in _FRAMES.items()}


def result_name(code: int) -> str:
    entry = mavlink.enums["MAV_MISSION_RESULT"].get(code)
    return str(entry.name) if entry is not None else f"MAV_MISSION_RESULT {code}"


def encode_item(link: MavlinkLink, seq: int, waypoint: Waypoint, frame: Frame,
                auto_continue: bool) -> Any:
    """MISSION_ITEM_INT: latitude and longitude in degrees x 1e7, altitude in metres;
    param1 the hold (or loiter) time, param2 the acceptance radius."""
    vehicle = link.vehicle
    return link.codec.mission_item_int_encode(
        vehicle.system_id, vehicle.component_id, seq, _FRAMES[frame],
        _COMMANDS[waypoint.command], 0, int(auto_continue), waypoint.hold_s,
        waypoint.accept_radius_m, 0, 0, round(waypoint.lat * 1e7), round(waypoint.lon * 1e7),
        waypoint.alt_m, MISSION_TYPE)


def decode_item(item: Any) -> tuple[Frame, Waypoint]:
    """A MISSION_ITEM_INT back into the parameters' shape (for a comparison, and a
    rollback that uploads what the vehicle held before)."""
    frame = _FRAME_NAMES.get(item.frame)
    command = _COMMAND_NAMES.get(item.command)
    if frame is None or command is None:
        raise MalformedResponseError(f"drone_waypoint: mission item {item.seq} has frame "
                                     f"{item.frame} and command {item.command}, which this "
                                     "capability does not write")
    return frame, Waypoint(lat=item.x / 1e7, lon=item.y / 1e7, alt_m=round(item.z, 3),
                           command=command, hold_s=item.param1,
                           accept_radius_m=item.param2)


async def upload_mission(link: MavlinkLink, items: list[Any]) -> None:
    """Send ``items`` (encoded MISSION_ITEM_INT) as the vehicle asks for them, until
    its MISSION_ACK: accepted returns, an error raises."""
    vehicle = link.vehicle
    last = link.codec.mission_count_encode(vehicle.system_id, vehicle.component_id,
                                           len(items), MISSION_TYPE)
    link.send(last)
    silent = 0
    highest = -1
    while True:
        answer = await link.expect(_REQUESTS, vehicle.message_timeout_s)
        if answer is None:
            silent += 1
            if silent > vehicle.retries:
                raise TransientSourceError(
                    f"drone_waypoint: vehicle {vehicle.target} did not answer "
                    f"{last.get_type()} (item {highest}) after {silent} tries of "
                    f"{vehicle.message_timeout_ms} ms")
            link.send(last)
            continue
        if answer.mission_type != MISSION_TYPE:
            continue
        if answer.get_type() == "MISSION_ACK":
            _check_ack(answer, link, sent=highest + 1, total=len(items))
            return
        if not 0 <= answer.seq < len(items):
            raise MalformedResponseError(f"drone_waypoint: vehicle {vehicle.target} asked for "
                                         f"item {answer.seq} of a {len(items)}-item mission")
        if answer.seq > highest:
            highest, silent = answer.seq, 0
        last = items[answer.seq]
        link.send(last)


def _check_ack(ack: Any, link: MavlinkLink, *, sent: int, total: int) -> None:
    if ack.type == mavlink.MAV_MISSION_ACCEPTED:
        if sent < total:
            raise MalformedResponseError(
                f"drone_waypoint: vehicle {link.vehicle.target} accepted the mission after "
                f"{sent} of {total} items")
        return
    what = (f"drone_waypoint: vehicle {link.vehicle.target} refused the mission "
            f"({total} items, at item {sent}): {result_name(ack.type)}")
    if ack.type in _TRANSIENT_RESULTS:
        raise TransientSourceError(what)
    raise PermanentSourceError(what)


async def download_mission(link: MavlinkLink) -> tuple[Frame, list[Waypoint]]:
    """MISSION_REQUEST_LIST → MISSION_COUNT, then each item, then MISSION_ACK."""
    vehicle = link.vehicle
    count = await _ask(link, link.codec.mission_request_list_encode(
        vehicle.system_id, vehicle.component_id, MISSION_TYPE), "MISSION_COUNT")
    if count.count > MAX_WAYPOINTS:
        raise MalformedResponseError(f"drone_waypoint: vehicle {vehicle.target} holds "
                                     f"{count.count} items, more than {MAX_WAYPOINTS}")
    frame: Frame = "relative"
    waypoints: list[Waypoint] = []
    for seq in range(count.count):
        item = await _ask(link, link.codec.mission_request_int_encode(
            vehicle.system_id, vehicle.component_id, seq, MISSION_TYPE), "MISSION_ITEM_INT",
            seq=seq)
        frame, waypoint = decode_item(item)
        waypoints.append(waypoint)
    link.send(link.codec.mission_ack_encode(vehicle.system_id, vehicle.component_id,
                                            mavlink.MAV_MISSION_ACCEPTED, MISSION_TYPE))
    return frame, waypoints


async def request_message(link: MavlinkLink, name: str, message_id: int) -> Any:
    """MAV_CMD_REQUEST_MESSAGE: the vehicle sends that message once."""
    vehicle = link.vehicle
    return await _ask(link, link.codec.command_long_encode(
        vehicle.system_id, vehicle.component_id, mavlink.MAV_CMD_REQUEST_MESSAGE, 0,
        message_id, 0, 0, 0, 0, 0, 0), name)


async def _ask(link: MavlinkLink, question: Any, answer_type: str,
               seq: int | None = None) -> Any:
    """Send ``question`` until the vehicle answers with ``answer_type`` (for item
    ``seq``, when given), at most ``retries + 1`` times."""
    vehicle = link.vehicle
    for _ in range(vehicle.retries + 1):
        link.send(question)
        while True:
            answer = await link.expect(frozenset({answer_type}), vehicle.message_timeout_s)
            if answer is None:
                break
            if (getattr(answer, "mission_type", MISSION_TYPE) == MISSION_TYPE
                    and (seq is None or answer.seq == seq)):
                return answer
    raise TransientSourceError(f"drone_waypoint: vehicle {vehicle.target} did not answer "
                               f"{question.get_type()} with {answer_type} after "
                               f"{vehicle.retries + 1} tries of {vehicle.message_timeout_ms} ms")
