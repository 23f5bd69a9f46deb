"""OTA rollouts on a real Mosquitto with simulated devices, through the seven-step
executor, the soak on a fake clock: a canary that passes; a canary that fails its
health analysis and rolls back every updated device (audited); a driver that
crashes during the fleet wave and is resumed without updating any device twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from framework.core import get_logger
from framework.testing import FakeClock, MosquittoServer
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey
from providers.devices import DeviceSimulator, SimulatorOptions
from providers.devices.ota import (
    OtaDeps,
    RolloutDriver,
    RolloutError,
    RolloutPlan,
    RolloutStore,
    rollout_status,
    start_rollout,
)
from tests.providers.devices.conftest import broker_of
from tests.providers.devices.rig import DeviceRig, device_rig, manifest

GROUP_KEY = "fleet:{devices}:group:meters"


@pytest.fixture
async def fleet(mosquitto: MosquittoServer, redis: Redis) -> AsyncIterator[DeviceSimulator]:
    async with DeviceSimulator(broker_of(mosquitto), SimulatorOptions(count=20),
                               logger=get_logger(test="ota-fleet")) as simulator:
        await redis.sadd(GROUP_KEY, *simulator.devices)
        yield simulator


@pytest.fixture
async def rig(redis: Redis, mosquitto: MosquittoServer) -> AsyncIterator[DeviceRig]:
    made = await device_rig(redis, broker_of(mosquitto), FIRMWARE_KEY, state_timeout_s=0.5)
    yield made
    await made.actions.aclose()


FIRMWARE_KEY = PrivateKey.generate()


def plan(**options: object) -> RolloutPlan:
    return RolloutPlan.model_validate({"firmware": manifest("1.2.0", FIRMWARE_KEY),
                                       "group": "meters", **options})


def deps(rig: DeviceRig, clock: FakeClock) -> OtaDeps:
    return OtaDeps(redis=rig.redis, executor=rig.executor, probe=rig.actions.probe,
                   clock=clock, logger=get_logger(test="ota"),
                   audit=AuditChain(rig.redis, clock=clock))


async def soak_through(clock: FakeClock, driving: asyncio.Task[str], soak_s: float) -> str:
    await clock.until_sleeping(1, timeout_s=30)
    await clock.advance(soak_s)
    return await asyncio.wait_for(driving, 60)


@pytest.mark.slow
async def test_a_canary_that_passes_goes_on_to_every_device_in_waves(
        rig: DeviceRig, fleet: DeviceSimulator) -> None:
    clock = FakeClock()
    rollout, count = await start_rollout(
        rig.redis, plan(canaryPercent="10%", soakS="4h", maxFailurePercent="2%", waveSize=5),
        now_s=clock.time())
    assert count == 20
    driving = asyncio.create_task(RolloutDriver(deps(rig, clock), rollout).run())
    await clock.until_sleeping(1, timeout_s=30)
    # Soaking: only the canary (10% of 20) has the new firmware.
    updated = sorted(d for d, device in fleet.devices.items()
                     if device.firmware_version == "1.2.0")
    assert updated == ["sim-00000", "sim-00001"]
    assert (await rollout_status(rig.redis, rollout))["stage"] == "soak"
    await clock.advance(4 * 3600)
    assert await asyncio.wait_for(driving, 60) == "done"
    assert all(device.firmware_version == "1.2.0" and device.firmware_updates == 1
               for device in fleet.devices.values())
    status = await rollout_status(rig.redis, rollout)
    assert status["stage"] == "done"
    assert status["states"]["updated"] == 20 and status["pending"] == 0
    assert status["waves"] == {"done": 4, "total": 4, "size": 5}


@pytest.mark.slow
async def test_an_unhealthy_canary_rolls_back_every_updated_device_audited(
        rig: DeviceRig, fleet: DeviceSimulator) -> None:
    clock = FakeClock()
    rollout, _ = await start_rollout(
        rig.redis, plan(canaryPercent="15%", soakS="4h", maxFailurePercent="2%"),
        now_s=clock.time())
    driving = asyncio.create_task(RolloutDriver(deps(rig, clock), rollout).run())
    await clock.until_sleeping(1, timeout_s=30)
    # During the soak, sim-00001 goes silent and the absence watchdog reports it.
    fleet.silence("sim-00001", 120)
    await rig.redis.xadd("device-events", {"schema": "base-event/1", "event": json.dumps({
        "type": "device.absent", "source": "device-watchdog",
        "payload": {"deviceId": "sim-00001", "group": "meters"}})})
    await clock.advance(4 * 3600)
    assert await asyncio.wait_for(driving, 60) == "rolled_back"

    for device_id in ("sim-00000", "sim-00002"):
        device = fleet.devices[device_id]
        assert (device.firmware_version, device.firmware_updates) == ("1.0.0", 2)
    assert fleet.devices["sim-00001"].firmware_version == "1.2.0"  # silent: cannot be undone
    assert all(fleet.devices[f"sim-{n:05d}"].firmware_updates == 0 for n in range(3, 20))
    status = await rollout_status(rig.redis, rollout)
    assert status["states"]["rolled_back"] == 2 and status["states"]["rollback_failed"] == 1
    assert "sim-00001: device.absent event" in status["reason"]

    records = await rig.audit()
    decided = [r for r in records if r.kind == "ota_rollback_decided"]
    assert len(decided) == 1 and decided[0].body["rollout"] == rollout
    [done] = [r for r in records if r.kind == "ota_rolled_back"]
    assert done.body["rolledBack"] == 2 and done.body["rollbackFailed"] == ["sim-00001"]
    undo = [r for r in records if r.kind == "executed" and r.body.get("step") == "rollback"]
    assert sorted(r.body["params"]["deviceId"] for r in undo) == ["sim-00000", "sim-00002"]
    assert (await AuditChain(rig.redis).verify()).ok


@pytest.mark.slow
async def test_a_driver_crash_in_the_fleet_wave_resumes_without_updating_twice(
        rig: DeviceRig, fleet: DeviceSimulator) -> None:
    clock = FakeClock()
    rollout, _ = await start_rollout(
        rig.redis, plan(canaryPercent="5%", soakS=0, waveSize=19, concurrency=4),
        now_s=clock.time())
    crashing = asyncio.create_task(RolloutDriver(deps(rig, clock), rollout).run())

    async def updated() -> int:
        return sum(1 for d in fleet.devices.values() if d.firmware_version == "1.2.0")

    while await updated() < 8:
        assert not crashing.done(), "the rollout ended before the crash"
        await asyncio.sleep(0.005)
    crashing.cancel()  # the driving process dies mid-wave
    with pytest.raises(asyncio.CancelledError):
        await crashing
    before = await RolloutStore(rig.redis, rollout).all_device_states()
    assert (await rollout_status(rig.redis, rollout))["stage"] == "waves"
    assert len(before) < 20

    assert await RolloutDriver(deps(rig, clock), rollout).run() == "done"
    assert {d: device.firmware_updates for d, device in fleet.devices.items()} == dict.fromkeys(
        fleet.devices, 1)
    assert (await rollout_status(rig.redis, rollout))["states"]["updated"] == 20


async def test_one_driver_at_a_time_and_bad_rollouts_are_named(
        rig: DeviceRig, fleet: DeviceSimulator) -> None:
    clock = FakeClock()
    rollout, _ = await start_rollout(rig.redis, plan(), now_s=clock.time(), rollout_id="r1")
    token = await RolloutStore(rig.redis, rollout).acquire(30)
    assert token is not None
    with pytest.raises(RolloutError, match="rollout r1: another process drives it"):
        await RolloutDriver(deps(rig, clock), rollout).run()
    with pytest.raises(RolloutError, match="rollout r1 exists already"):
        await start_rollout(rig.redis, plan(), now_s=clock.time(), rollout_id="r1")
    with pytest.raises(RolloutError, match="group nobody has no devices"):
        await start_rollout(rig.redis, plan(group="nobody"), now_s=clock.time())
    with pytest.raises(RolloutError, match="no such rollout"):
        await rollout_status(rig.redis, "r2")


@pytest.mark.parametrize(("options", "message"), [
    ({"canaryPercent": "lots"}, "'lots' is not a percentage"),
    ({"soakS": "4 weeks"}, "'4 weeks' is not a duration"),
    ({"group": "a/b"}, "group"),
    ({"maxFailurePercent": 101}, "maxFailurePercent"),
])
def test_a_bad_plan_names_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(**options)


async def test_a_driver_that_loses_its_lease_stops(
        rig: DeviceRig, fleet: DeviceSimulator) -> None:
    clock = FakeClock()
    rollout, _ = await start_rollout(rig.redis, plan(canaryPercent="5%", soakS="1h"),
                                     now_s=clock.time(), rollout_id="r-lease")
    quick = OtaDeps(redis=rig.redis, executor=rig.executor, probe=rig.actions.probe,
                    clock=clock, logger=get_logger(test="ota"), lease_ttl_s=1.0)
    driving = asyncio.create_task(RolloutDriver(quick, rollout).run())
    await clock.until_sleeping(1, timeout_s=30)  # soaking, lease held
    store = RolloutStore(rig.redis, rollout)
    await rig.redis.set(store.keys.lease, "another-driver")  # e.g. after a long GC pause
    with pytest.raises(RolloutError, match="rollout r-lease: this process lost its lease"):
        await asyncio.wait_for(driving, 10)
    assert await rig.redis.get(store.keys.lease) in ("another-driver", b"another-driver")
    assert (await rollout_status(rig.redis, rollout))["stage"] == "soak"


@pytest.mark.slow
async def test_a_failed_canary_update_rolls_back_the_others_and_is_not_undone_twice(
        rig: DeviceRig, fleet: DeviceSimulator) -> None:
    fleet.devices["sim-00000"].fail_self_test = True  # the executor rolls this one back
    clock = FakeClock()
    rollout, _ = await start_rollout(rig.redis, plan(canaryPercent="15%", soakS="4h"),
                                     now_s=clock.time())
    assert await RolloutDriver(deps(rig, clock), rollout).run() == "rolled_back"
    assert [fleet.devices[f"sim-{n:05d}"].firmware_version for n in range(3)] == ["1.0.0"] * 3
    # sim-00000: its update and the executor's rollback; the others: update and rollback.
    assert [fleet.devices[f"sim-{n:05d}"].firmware_updates for n in range(4)] == [2, 2, 2, 0]
    status = await rollout_status(rig.redis, rollout)
    assert status["states"]["rolled_back"] == 3 and status["states"]["rollback_failed"] == 0
    assert status["reason"] == "canary: 1 of 3 updates failed"
