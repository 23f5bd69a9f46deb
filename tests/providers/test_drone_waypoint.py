"""``drone_waypoint`` against a MAVLink vehicle emulator on 127.0.0.1 (pymavlink's codec
over UDP): an upload read back, a lost request recovered, noise ignored, a NACK, a
silent vehicle and a gone one, every parameter error, and through the signed
catalog's pipeline: a call that succeeds, a vehicle that fails (retries, then the
breaker opens), a mission that does not stick (the previous one is uploaded back,
audited) and a redelivered event that does not upload twice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymavlink.dialects.v20 import common as mavlink
from redis.asyncio import Redis

from framework.consuming import CallContext, CallPolicy, CapabilityRegistry
from framework.consuming.capabilities.breaker import BreakerPolicy
from framework.core import (
    HostPolicy,
    MalformedResponseError,
    PermanentSourceError,
    RefusedTargetError,
    SystemClock,
    TransientSourceError,
    get_logger,
)
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing.mavlink_vehicle import MavlinkVehicle, Mode
from providers.builtin import register_builtin_capabilities
from providers.mavlink import DroneActions, VehicleAddress
from tests.providers.messaging_rig import Rig, definition_path, safe_rig
from tests.providers.redelivery import deliver_twice

DEFINITION = definition_path("mavlink", "drone_waypoint")
PLAN = [{"lat": 48.8584, "lon": 2.2945, "altM": 30, "command": "takeoff"},
        {"lat": 48.8590, "lon": 2.2950, "altM": 40.5, "holdS": 5, "acceptRadiusM": 2},
        {"lat": 0, "lon": 0, "altM": 0, "command": "return_to_launch"}]
FAST = CallPolicy(timeout_s=5.0, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.05,
                  breaker=BreakerPolicy(failure_threshold=3, window_s=60, cooldown_s=60))


@pytest.fixture
async def vehicle() -> AsyncIterator[MavlinkVehicle]:
    async with MavlinkVehicle() as emulator:
        yield emulator


def address(vehicle: MavlinkVehicle, **changes: Any) -> VehicleAddress:
    return VehicleAddress(**{"host": vehicle.host, "port": vehicle.port,
                             "message_timeout_ms": 100, "retries": 2, "deadline_ms": 3000,
                             **changes})


def actions(vehicle: MavlinkVehicle, policy: CallPolicy | None = None) -> DroneActions:
    return DroneActions({"uav-1": address(vehicle)}, policy=policy)


def context(redis: Redis, key: str = "drones:1-0:r:s",
            hosts: HostPolicy | None = None) -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=SystemClock(),
                       logger=get_logger(test="drone"), hosts=hosts)


def plan(**changes: Any) -> dict[str, Any]:
    return {"vehicle": "uav-1", "waypoints": PLAN, **changes}


async def test_a_mission_is_uploaded_and_read_back(redis: Redis,
                                                   vehicle: MavlinkVehicle) -> None:
    drone = actions(vehicle)

    result = await drone.upload(plan(), context(redis))
    state = await drone.read_state(plan(), context(redis))

    assert result == {"vehicle": "uav-1", "target": f"mavlink:127.0.0.1:{vehicle.port}/1/1",
                      "items": 3, "duplicate": False}
    assert vehicle.waypoints() == [(mavlink.MAV_CMD_NAV_TAKEOFF, 48.8584, 2.2945, 30.0),
                                   (mavlink.MAV_CMD_NAV_WAYPOINT, 48.859, 2.295, 40.5),
                                   (mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH, 0.0, 0.0, 0.0)]
    assert vehicle.mission[1].param1 == 5 and vehicle.mission[1].param2 == 2
    assert vehicle.mission[0].frame == mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT
    assert (state["reachable"], state["matches"], state["missionTotal"],
            state["missionCurrent"]) == (True, True, 3, 0)
    assert state["position"] == pytest.approx({"lat": 48.8584, "lon": 2.2945, "altM": 12.5})
    assert state["waypoints"][1]["holdS"] == 5 and state["frame"] == "relative"


async def test_a_different_mission_on_the_vehicle_does_not_match(
        redis: Redis, vehicle: MavlinkVehicle) -> None:
    drone = actions(vehicle)
    await drone.upload(plan(), context(redis))
    moved = [PLAN[0], {**PLAN[1], "lat": 48.8591}, PLAN[2]]  # 11 m further north
    state = await drone.read_state(plan(waypoints=moved), context(redis))
    assert (state["matches"], state["missionTotal"]) == (False, 3)


@pytest.mark.parametrize("mode", ["drop", "noise"])
async def test_a_lost_request_and_noise_do_not_stop_the_upload(
        redis: Redis, mode: Mode) -> None:
    async with MavlinkVehicle(mode) as vehicle:
        await actions(vehicle).upload(plan(), context(redis))
        assert len(vehicle.mission) == 3 and vehicle.uploads == 1
        if mode == "drop":
            # The request for item 1 was lost: item 0 went again after one timeout.
            assert vehicle.received.count("MISSION_ITEM_INT") == 4


async def test_a_nack_is_a_permanent_error_naming_the_result(redis: Redis) -> None:
    async with MavlinkVehicle("nack") as vehicle:
        with pytest.raises(PermanentSourceError, match=r"refused the mission \(3 items, at "
                           r"item 0\): MAV_MISSION_NO_SPACE"):
            await actions(vehicle).upload(plan(), context(redis))


async def test_a_silent_vehicle_fails_after_its_retries(redis: Redis) -> None:
    async with MavlinkVehicle("silent") as vehicle:
        with pytest.raises(TransientSourceError, match=r"did not answer MISSION_COUNT "
                           r"\(item -1\) after 3 tries of 100 ms"):
            await actions(vehicle).upload(plan(), context(redis))
        assert vehicle.received == ["MISSION_COUNT"] * 3
        state = await actions(vehicle).read_state(plan(), context(redis))
        assert (state["reachable"], state["matches"]) == (False, False)


async def test_a_vehicle_that_is_gone_fails_at_once(redis: Redis) -> None:
    async with MavlinkVehicle() as vehicle:
        drone = actions(vehicle)
    with pytest.raises(TransientSourceError, match="is not listening"):
        await drone.upload(plan(), context(redis))


async def test_a_vehicle_asking_for_an_item_out_of_range_is_malformed(
        redis: Redis, vehicle: MavlinkVehicle) -> None:
    vehicle._request = lambda seq, addr: vehicle._send(  # type: ignore[method-assign]
        vehicle.codec.mission_request_int_encode(255, 0, 7), addr)
    with pytest.raises(MalformedResponseError, match="asked for item 7 of a 3-item mission"):
        await actions(vehicle).upload(plan(), context(redis))


async def test_a_vehicle_that_never_finishes_the_transfer_is_cut_by_the_deadline(
        redis: Redis, vehicle: MavlinkVehicle) -> None:
    vehicle._request = lambda seq, addr: vehicle._send(  # type: ignore[method-assign]
        vehicle.codec.mission_request_int_encode(255, 0, 0), addr)  # item 0, forever
    drone = DroneActions({"uav-1": address(vehicle, deadline_ms=300)})
    with pytest.raises(TransientSourceError, match=r"did not finish the upload within 300 ms"):
        await drone.upload(plan(), context(redis))
    assert vehicle.received.count("MISSION_ITEM_INT") > 10 and vehicle.uploads == 0


async def test_a_mission_holding_other_commands_is_not_overwritten_blindly(
        redis: Redis, vehicle: MavlinkVehicle) -> None:
    # Another ground station's DO_SET_SERVO: a rollback could not restore it.
    vehicle.mission = [vehicle.codec.mission_item_int_encode(
        1, 1, 0, mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, mavlink.MAV_CMD_DO_SET_SERVO,
        0, 1, 9, 1500, 0, 0, 0, 0, 0)]
    with pytest.raises(MalformedResponseError, match="mission item 0 has frame 6 and "
                       "command 183, which this capability does not write"):
        await actions(vehicle).read_state(plan(), context(redis))


@pytest.mark.parametrize(("change", "message"), [
    ({"vehicle": "uav 1"}, "field vehicle: String should match pattern"),
    ({"vehicle": "uav-9"}, "vehicle 'uav-9' is not configured in MAVLINK_VEHICLES "
                           "(known: uav-1)"),
    ({"waypoints": None}, "field waypoints: Input should be a valid list"),
    ({"waypoints": [{**PLAN[0], "lat": 91}]},
     "field waypoints.0.lat: Input should be less than or equal to 90"),
    ({"waypoints": [{**PLAN[0], "lon": -181}]},
     "field waypoints.0.lon: Input should be greater than or equal to -180"),
    ({"waypoints": [{"lat": 1, "lon": 1}]}, "field waypoints.0.altM: Field required"),
    ({"waypoints": [{**PLAN[0], "command": "flip"}]}, "field waypoints.0.command: Input "
                                                      "should be 'waypoint', 'takeoff'"),
    ({"waypoints": [{**PLAN[0], "holdS": -1}]}, "field waypoints.0.holdS: Input should be "
                                                "greater than or equal to 0"),
    ({"waypoints": [PLAN[0]] * 501}, "field waypoints: List should have at most 500 items"),
    ({"frame": "local"}, "field frame: Input should be 'relative' or 'global'"),
    ({"host": "10.0.0.9"}, "field host: Extra inputs are not permitted"),
])
async def test_parameter_errors_name_the_parameter(
        redis: Redis, vehicle: MavlinkVehicle, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="drone_waypoint") as raised:
        await actions(vehicle).upload(plan(**change), context(redis))
    assert message in str(raised.value)
    assert vehicle.received == []


@pytest.mark.parametrize(("raw", "message"), [
    ("{not json", "MAVLINK_VEHICLES is not JSON"),
    ('{"uav-1": {"port": 14550}}', "field vehicles.uav-1.host: Field required"),
    ('{"uav 1": {"host": "127.0.0.1"}}', "'uav 1' is not a vehicle id"),
])
async def test_a_bad_vehicle_map_fails_the_call_naming_it(redis: Redis, raw: str,
                                                          message: str) -> None:
    with pytest.raises(ValueError, match="MAVLINK_VEHICLES") as raised:
        await DroneActions(env={"MAVLINK_VEHICLES": raw}).upload(plan(), context(redis))
    assert message in str(raised.value)


async def test_the_vehicle_map_is_read_from_the_environment(
        redis: Redis, vehicle: MavlinkVehicle) -> None:
    raw = json.dumps({"uav-1": {"host": "127.0.0.1", "port": vehicle.port,
                                "messageTimeoutMs": 100}})
    await DroneActions(env={"MAVLINK_VEHICLES": raw}).upload(plan(), context(redis))
    assert len(vehicle.mission) == 3


async def test_a_host_the_steps_allow_list_does_not_name_is_refused(
        redis: Redis, vehicle: MavlinkVehicle) -> None:
    with pytest.raises(RefusedTargetError, match="not in the allow-list"):
        await actions(vehicle).upload(plan(), context(redis, hosts=HostPolicy.of(["10.0.0.5"])))
    assert vehicle.received == []


async def test_a_redelivered_step_does_not_upload_again(redis: Redis,
                                                        vehicle: MavlinkVehicle) -> None:
    drone = actions(vehicle)
    await drone.upload(plan(), context(redis))
    again = await drone.upload(plan(), context(redis))
    assert again["duplicate"] is True and vehicle.uploads == 1


# -- through the signed catalog -------------------------------------------------------


async def rig(redis: Redis, drone: DroneActions, tmp_path: Path, **changes: Any) -> Rig:
    raw = {**orjson.loads(DEFINITION.read_bytes()), **changes}
    path = tmp_path / DEFINITION.name
    path.write_bytes(orjson.dumps(raw))
    return await safe_rig(redis, [drone.spec()], [path])


async def test_an_upload_runs_through_the_pipeline_and_is_audited(
        redis: Redis, vehicle: MavlinkVehicle, tmp_path: Path) -> None:
    pipeline = await rig(redis, actions(vehicle), tmp_path)

    result = await pipeline.call("drone_waypoint", plan())

    assert result["items"] == 3 and len(vehicle.mission) == 3
    [record] = await pipeline.audit()
    assert record.kind == "executed" and record.body["resource"] == "vehicle:uav-1"
    assert record.body["stateBefore"]["waypoints"] == []
    assert record.body["stateAfter"]["matches"] is True


async def test_a_mission_that_does_not_stick_is_rolled_back_to_the_previous_one(
        redis: Redis, vehicle: MavlinkVehicle, tmp_path: Path) -> None:
    previous = [{"lat": 10.0, "lon": 20.0, "altM": 15.0}]
    await actions(vehicle).upload(plan(waypoints=previous), context(redis, key="old"))
    vehicle.mode = "forget"
    pipeline = await rig(redis, actions(vehicle), tmp_path, postconditions=[
        {**orjson.loads(DEFINITION.read_bytes())["postconditions"][0], "timeoutMs": 400}])

    with pytest.raises(RolledBackError) as caught:
        await pipeline.call("drone_waypoint", plan())

    assert caught.value.rollback_ok is True
    assert vehicle.uploads == 3  # the old plan, the forgotten one, the rollback
    failed, rollback = await pipeline.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.kind == "rollback" and rollback.body["ok"] is True
    assert [w["lat"] for w in rollback.body["rollbackParams"]["waypoints"]] == [10.0]
    assert rollback.body["rollbackParams"]["frame"] == "relative"


async def test_a_refusing_vehicle_is_retried_then_its_breaker_opens(
        redis: Redis, tmp_path: Path) -> None:
    async with MavlinkVehicle(
            "nack", nack_result=mavlink.MAV_MISSION_OPERATION_CANCELLED) as vehicle:
        # No rollback: its uploads (refused too) would count with the call's.
        pipeline = await rig(redis, actions(vehicle, FAST), tmp_path, rollbackStrategy="none")
        with pytest.raises(CallFailedError, match=r"failed after 2 attempts: .*"
                           "MAV_MISSION_OPERATION_CANCELLED"):
            await pipeline.call("drone_waypoint", plan())
        assert vehicle.received.count("MISSION_COUNT") == 2
        for _ in range(5):
            with pytest.raises((CallFailedError, CircuitOpenError)) as caught:
                await pipeline.call("drone_waypoint", plan())
            if isinstance(caught.value, CircuitOpenError):
                break
        else:
            raise AssertionError("the breaker never opened")
        before = vehicle.received.count("MISSION_COUNT")
        with pytest.raises(CircuitOpenError):
            await pipeline.call("drone_waypoint", plan())
        assert vehicle.received.count("MISSION_COUNT") == before
        assert vehicle.uploads == 0


async def test_a_redelivered_event_does_not_upload_twice(redis: Redis,
                                                         vehicle: MavlinkVehicle) -> None:
    rules = {"version": 1, "rules": [{
        "name": "survey", "match": {"stream": "drones"},
        "steps": [{"id": "upload", "call": "drone_waypoint", "params": {
            "vehicle": "uav-1", "waypoints": [
                {"lat": "{{ payload.lat }}", "lon": "{{ payload.lon }}", "altM": 25}]}}]}]}
    event = {"type": "survey.requested", "source": "gis", "timestamp": "2026-12-03T10:00:00Z",
             "payload": {"lat": 45.5, "lon": 4.25}}

    await deliver_twice(redis, rules, actions(vehicle).spec(), "drones", event)

    assert vehicle.uploads == 1
    assert vehicle.waypoints() == [(mavlink.MAV_CMD_NAV_WAYPOINT, 45.5, 4.25, 25.0)]


async def test_drone_waypoint_and_alarm_trigger_are_builtin_capabilities() -> None:
    registry = CapabilityRegistry()
    await register_builtin_capabilities(registry, env={}).aclose()
    assert {"drone_waypoint@1.0.0", "alarm_trigger@1.0.0"} <= set(registry.keys)
