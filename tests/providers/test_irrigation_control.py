"""``irrigation_control`` against a real pymodbus slave, through the signed catalog's
pipeline: an open is bounded (its close scheduled before the valve opens, then
swept when due), a close on command cancels it, every parameter error, a valve
that does not open (the rollback closes it), a device that fails (retries, then
the breaker), a redelivered event that does not open twice, and the sweeper's
guarantees: a claim whose sweeper died is taken over when its lease ends, one
failing zone does not hold up the others, a zone opened again keeps its new close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import SystemClock, get_logger
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import free_port
from framework.trust import AuditChain, ResourceArbiter
from providers.modbus.register_simulator import RegisterSimulator
from providers.plant import CLOSES_KEY, CloseSchedule, PlantActions, irrigation_control_spec
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig
from tests.providers.plant_rig import (
    MAX_DURATION_S,
    ZONE_COILS,
    plant_settings,
    quick_definition,
    run_twice,
)

DEFINITION = definition_path("plant", "irrigation_control")
Z1 = ZONE_COILS["Z-01"]


@pytest.fixture
async def plc() -> AsyncIterator[RegisterSimulator]:
    async with RegisterSimulator() as device:
        yield device


async def rig_for(redis: Redis, plc: RegisterSimulator, definition: Path = DEFINITION) -> Rig:
    return await safe_rig(redis, [irrigation_control_spec(plant_settings(plc),
                                                          policy=FAST_POLICY)], [definition])


def context(redis: Redis, key: str = "plant:1-0:r:s") -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=SystemClock(),
                       logger=get_logger(test="irrigation"))


def sweeper(redis: Redis, plc: RegisterSimulator | int, audit: AuditChain | None = None,
            **changes: Any) -> Any:
    return PlantActions(plant_settings(plc, **changes)).sweeper(
        redis, clock=SystemClock(), logger=get_logger(test="sweeper"), audit=audit)


def opening(zone: str = "Z-01", duration_s: int = 30) -> dict[str, Any]:
    return {"zoneId": zone, "action": "open", "durationS": duration_s}


async def test_an_open_schedules_its_close_first_and_the_sweeper_closes_it_when_due(
        redis: Redis, plc: RegisterSimulator) -> None:
    rig = await rig_for(redis, plc)
    result = await rig.call("irrigation_control", opening(duration_s=1))

    assert plc.values["coil"][Z1] == 1
    due = await CloseSchedule(redis).due_ms("Z-01")
    assert due is not None and result["closesAtMs"] == due
    [record] = await rig.audit()
    assert record.kind == "executed" and record.body["stateAfter"]["closeDueMs"] == due

    sweep = sweeper(redis, plc, AuditChain(redis))
    assert await sweep.sweep_once() == 0  # not due yet
    assert plc.values["coil"][Z1] == 1
    await asyncio.sleep(1.1)
    assert await sweep.sweep_once() == 1
    assert plc.values["coil"][Z1] == 0
    assert await redis.zcard(CLOSES_KEY) == 0
    executed, closed = await rig.audit()  # the scheduled close joins the step's chain
    assert closed.kind == "scheduled_close" and closed.body["ok"] is True
    assert (closed.body["zoneId"], closed.body["dueMs"]) == ("Z-01", due)
    assert closed.body["fencingToken"] > executed.body["fencingToken"]
    assert (await AuditChain(redis).verify()).ok


async def test_a_close_on_command_closes_and_cancels_the_scheduled_close(
        redis: Redis, plc: RegisterSimulator) -> None:
    rig = await rig_for(redis, plc)
    await rig.call("irrigation_control", opening(), key="k:open")
    await rig.call("irrigation_control", {"zoneId": "Z-01", "action": "close"}, key="k:close")
    assert plc.values["coil"][Z1] == 0
    assert await CloseSchedule(redis).due_ms("Z-01") is None
    assert await rig.kinds() == ["executed", "executed"]


async def test_a_valve_that_does_not_open_is_closed_by_the_rollback_and_audited(
        redis: Redis, plc: RegisterSimulator, tmp_path: Path) -> None:
    plc.stuck = True
    rig = await rig_for(redis, plc, quick_definition(DEFINITION, tmp_path))
    with pytest.raises(RolledBackError) as caught:
        await rig.call("irrigation_control", opening())
    assert caught.value.rollback_ok is True
    assert plc.writes == [("coil", Z1, [1]), ("coil", Z1, [0])]
    failed, rollback = await rig.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.body["rollbackParams"] == {"zoneId": "Z-01", "action": "close",
                                               "durationS": None}
    # The close on command removed the scheduled one: nothing left to sweep.
    assert await CloseSchedule(redis).due_ms("Z-01") is None


async def test_a_busy_device_is_retried_then_the_breaker_opens_and_the_close_stays(
        redis: Redis, plc: RegisterSimulator) -> None:
    plc.refuse_writes[Z1] = ExcCodes.DEVICE_BUSY
    rig = await rig_for(redis, plc)
    with pytest.raises(CallFailedError, match=r"after 3 attempts: .*coil 5 refused"):
        await rig.call("irrigation_control", opening())
    assert plc.refused_writes == 3
    with pytest.raises(CircuitOpenError):
        await rig.call("irrigation_control", opening(), key="k:again")
    assert plc.refused_writes == 3
    # The retries scheduled one close (the same step); it is still there to sweep.
    assert await redis.zcard(CLOSES_KEY) == 1


async def test_a_redelivered_event_does_not_open_twice(
        redis: Redis, plc: RegisterSimulator) -> None:
    spec = irrigation_control_spec(plant_settings(plc))
    await run_twice(redis, spec, {"call": "irrigation_control", "params": opening()})
    assert plc.writes == [("coil", Z1, [1])]


async def test_a_redelivered_step_reopens_only_while_its_close_is_pending(
        redis: Redis, plc: RegisterSimulator) -> None:
    """The step ran (close scheduled, maybe the valve opened) and its consumer died
    before recording it: the redelivery commands the valve open again but keeps
    the close when it was; once that close ran, the redelivery opens nothing."""
    spec = irrigation_control_spec(plant_settings(plc))
    first = await spec.handler(opening(duration_s=1), context(redis))
    again = await spec.handler(opening(duration_s=1), context(redis))
    assert again["closesAtMs"] == first["closesAtMs"]
    assert plc.writes == [("coil", Z1, [1]), ("coil", Z1, [1])]
    await asyncio.sleep(1.1)
    assert await sweeper(redis, plc).sweep_once() == 1
    late = await spec.handler(opening(duration_s=1), context(redis))
    assert late["skipped"] is True
    assert plc.values["coil"][Z1] == 0 and plc.writes[-1] == ("coil", Z1, [0])


@pytest.mark.parametrize(("params", "message"), [
    ({}, "field zoneId: Field required; field action: Field required"),
    ({"zoneId": "Z-01", "action": "flood"}, "field action: Input should be 'open' or 'close'"),
    ({"zoneId": "Z-01", "action": "open"}, "open needs durationS"),
    ({"zoneId": "Z-01", "action": "open", "durationS": 0}, "field durationS: Input should "
                                                           "be greater than 0"),
    ({"zoneId": "Z-01", "action": "open", "durationS": 2.5}, "field durationS: Input should "
                                                             "be a valid integer"),
    ({"zoneId": "Z-01", "action": "close", "durationS": 5}, "close takes no durationS"),
    ({"zoneId": "Z-01", "action": "open", "durationS": MAX_DURATION_S + 1},
     f"durationS {MAX_DURATION_S + 1} of zone Z-01 is over its maxDurationS {MAX_DURATION_S}"),
    ({"zoneId": "Z-09", "action": "open", "durationS": 5},
     "zone 'Z-09' is not configured (PLANT_CONFIG; known: Z-01, Z-02, Z-03)"),
    ({"zoneId": "Z-01", "action": "open", "durationS": 5, "port": 502},
     "field port: Extra inputs are not permitted"),
])
async def test_every_parameter_error_names_the_parameter_and_schedules_nothing(
        redis: Redis, plc: RegisterSimulator, params: dict[str, Any], message: str) -> None:
    spec = irrigation_control_spec(plant_settings(plc))
    with pytest.raises(ValueError, match="irrigation_control") as raised:
        await spec.handler(params, context(redis))
    assert message in str(raised.value)
    assert plc.writes == [] and await redis.zcard(CLOSES_KEY) == 0


@pytest.mark.slow
async def test_a_claim_whose_sweeper_died_is_taken_over_when_its_lease_ends(
        redis: Redis, plc: RegisterSimulator) -> None:
    spec = irrigation_control_spec(plant_settings(plc))
    await spec.handler(opening(duration_s=1), context(redis))
    await asyncio.sleep(1.05)
    # A sweeper claims it and dies before closing (lease 1000 ms in plant_config).
    [claim] = await CloseSchedule(redis).claim_due(lease_ms=1000)
    assert claim.zone_id == "Z-01"
    other = sweeper(redis, plc)
    assert await other.sweep_once() == 0  # claimed: not due for anyone else
    await asyncio.sleep(1.05)
    assert await other.sweep_once() == 1
    assert plc.values["coil"][Z1] == 0 and await redis.zcard(CLOSES_KEY) == 0


@pytest.mark.slow
async def test_one_failing_zone_does_not_hold_up_the_others_and_is_retried(
        redis: Redis, plc: RegisterSimulator) -> None:
    spec = irrigation_control_spec(plant_settings(plc))
    for zone in ZONE_COILS:
        await spec.handler(opening(zone, 1), context(redis, key=f"k:{zone}"))
    plc.refuse_writes[ZONE_COILS["Z-02"]] = ExcCodes.ILLEGAL_ADDRESS
    await asyncio.sleep(1.05)
    sweep = sweeper(redis, plc, AuditChain(redis))
    assert await sweep.sweep_once() == 2
    assert [plc.values["coil"][c] for c in ZONE_COILS.values()] == [0, 1, 0]
    records = {r.body["zoneId"]: r.body async for r in AuditChain(redis).records()}
    assert [records[zone]["ok"] for zone in ZONE_COILS] == [True, False, True]
    assert "coil 6 refused: Modbus exception 2" in records["Z-02"]["error"]
    assert await redis.zrange(CLOSES_KEY, 0, -1) == ["Z-02"]  # due again after its lease
    del plc.refuse_writes[ZONE_COILS["Z-02"]]
    await asyncio.sleep(1.05)
    assert await sweep.sweep_once() == 1
    assert plc.values["coil"][ZONE_COILS["Z-02"]] == 0


async def test_a_zone_opened_again_while_its_close_runs_keeps_its_new_close(
        redis: Redis, plc: RegisterSimulator) -> None:
    spec = irrigation_control_spec(plant_settings(plc))
    schedule = CloseSchedule(redis)
    await spec.handler(opening(duration_s=1), context(redis, key="k:1"))
    await asyncio.sleep(1.05)
    [claim] = await schedule.claim_due(lease_ms=5000)
    await spec.handler(opening(duration_s=30), context(redis, key="k:2"))
    assert await schedule.done(claim) is False
    due = await schedule.due_ms("Z-01")
    assert due is not None and due > claim.due_ms + 29_000


async def test_the_sweeper_loop_outlives_a_redis_that_is_gone(plc: RegisterSimulator) -> None:
    gone = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    loop = asyncio.create_task(sweeper(gone, plc).run())
    try:
        await asyncio.sleep(0.3)  # several sweeps, each failing
        assert not loop.done()
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await gone.aclose()


async def test_the_sweeper_closes_under_the_zones_permit_and_leaves_a_reopened_zone(
        redis: Redis, plc: RegisterSimulator) -> None:
    """A close waits for the step holding the zone's permit; if that step opened the
    zone again, its new close stands and the old one is dropped."""
    spec = irrigation_control_spec(plant_settings(plc))
    await spec.handler(opening(duration_s=1), context(redis, key="k:1"))
    await asyncio.sleep(1.05)
    arbiter = ResourceArbiter(redis, clock=SystemClock(), logger=get_logger(test="permit"))
    async with arbiter.permit("zone:Z-01"):
        sweep = asyncio.create_task(sweeper(redis, plc).sweep_once())
        await asyncio.sleep(0.2)
        assert not sweep.done() and plc.values["coil"][Z1] == 1  # waiting for the permit
        reopened = await spec.handler(opening(duration_s=30), context(redis, key="k:2"))
    assert await sweep == 0
    assert plc.values["coil"][Z1] == 1
    assert await CloseSchedule(redis).due_ms("Z-01") == reopened["closesAtMs"]


async def test_a_redelivered_open_whose_close_ran_passes_the_pipeline_opening_nothing(
        redis: Redis, plc: RegisterSimulator) -> None:
    rig = await rig_for(redis, plc)
    await rig.call("irrigation_control", opening(duration_s=1), key="k:same")
    await asyncio.sleep(1.05)
    assert await sweeper(redis, plc).sweep_once() == 1

    again = await rig.call("irrigation_control", opening(duration_s=1), key="k:same")

    assert again["skipped"] is True
    assert plc.writes == [("coil", Z1, [1]), ("coil", Z1, [0])]
    assert await rig.kinds() == ["executed", "executed"]  # no rollback, no dead letter


async def test_a_permit_left_by_a_dead_step_does_not_hold_back_a_due_close(
        redis: Redis, plc: RegisterSimulator) -> None:
    """The step's consumer died holding the zone's permit (kept until its TTL): after
    half its lease the sweeper closes without it, and records that it did."""
    await irrigation_control_spec(plant_settings(plc)).handler(opening(duration_s=1),
                                                                context(redis))
    arbiter = ResourceArbiter(redis, clock=SystemClock(), logger=get_logger(test="permit"))
    async with arbiter.permit("zone:Z-01"):
        await asyncio.sleep(1.05)
        assert await sweeper(redis, plc, AuditChain(redis)).sweep_once() == 1
        assert plc.values["coil"][Z1] == 0
    [closed] = [r async for r in AuditChain(redis).records()]
    assert closed.kind == "scheduled_close" and closed.body["ok"] is True
    assert closed.body["fencingToken"] is None  # made without the permit
