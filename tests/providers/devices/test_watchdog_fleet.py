"""10,000 devices on a fake clock, two watchdog replicas, one crash: some devices go
silent, a group is in maintenance, one device flaps. Exactly the right absences and
returns, once each."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from framework.testing import FakeClock
from providers.devices import (
    DeviceGroups,
    DeviceRegistry,
    Heartbeat,
    Watchdog,
    WatchdogSettings,
)
from tests.providers.devices.fleet_events import device_events, tally

T_S = 1800.0
ROUND_S = 900.0

METERS = [f"meter-{i:05d}" for i in range(9_950)]
SILENT = METERS[:100]
FLAPPER = METERS[100]
HEALTHY = METERS[101:]
SUBSTATION = [f"sub-{i:02d}" for i in range(50)]
SUB_BACK, SUB_GONE = SUBSTATION[:25], SUBSTATION[25:]


async def beat(registry: DeviceRegistry, ids: list[str], group: str = "meters") -> None:
    await registry.heartbeats([Heartbeat(i, timeout_s=T_S, group=group) for i in ids])


async def next_round(clock: FakeClock, sleepers: int) -> None:
    """Move to the next round and wait until every replica has swept and sleeps again."""
    await clock.advance(ROUND_S)
    await clock.until_sleeping(sleepers, timeout_s=30)


@pytest.mark.slow
async def test_ten_thousand_devices_two_replicas_and_a_crash(redis: Redis) -> None:
    clock = FakeClock()
    registry = DeviceRegistry(redis, clock=clock)
    groups = DeviceGroups(redis, clock=clock)
    await groups.set_timeout("substation", T_S)
    t0 = clock.time()
    await groups.add_window("substation", start_s=t0 + 1500, end_s=t0 + 4000,
                            reason="planned network outage", created_by="test")
    await beat(registry, METERS)
    await beat(registry, SUBSTATION, group="substation")
    settings = WatchdogSettings(sweep_interval_s=1.0, batch_size=40, lease_ttl_s=60)
    replicas = [Watchdog(redis, clock=clock, settings=settings, token=f"replica-{n}")
                for n in "ab"]
    tasks = [asyncio.create_task(w.run()) for w in replicas]
    crashed = -1
    try:
        await clock.until_sleeping(2)
        schedule = {  # round -> who beats after the sweep of that round
            1: HEALTHY + [FLAPPER], 2: HEALTHY, 3: HEALTHY, 4: HEALTHY + [FLAPPER],
            5: HEALTHY + SUB_BACK, 6: HEALTHY + SUB_BACK, 7: HEALTHY + [FLAPPER] + SUB_BACK,
            8: HEALTHY + SUB_BACK}
        for number in range(1, 9):
            await next_round(clock, sleepers=2)
            if number == 3:
                # The survivor takes over at its next step.
                crashed = await crash_the_holder(redis, replicas, tasks)
            await beat(registry, schedule[number])
            if number == 3:
                # The restarted replica comes back as a standby.
                replicas.append(Watchdog(redis, clock=clock, settings=settings,
                                         token="replica-a-restarted"))
                tasks.append(asyncio.create_task(replicas[-1].run()))
                await clock.until_sleeping(2, timeout_s=30)
        counts = tally(await device_events(redis))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    expected = {("device.absent", d): 1 for d in SILENT + SUB_GONE}
    expected[("device.absent", FLAPPER)] = 2
    expected[("device.returned", FLAPPER)] = 2
    assert dict(counts) == expected
    live = [r for n, r in enumerate(replicas) if n != crashed]
    holders = [r.lease.token for r in live if r.lease.held]
    assert holders == [await redis.get(live[0].keys.watchdog_lease)]  # one, and it is the lease's
    flapper = await registry.show(FLAPPER)
    assert flapper is not None and flapper.status == "online" and flapper.absences == 2
    gone = await registry.show(SUB_GONE[0])
    assert gone is not None and gone.status == "absent"
    back = await registry.show(SUB_BACK[0])
    assert back is not None and back.status == "online" and back.absences == 0


async def crash_the_holder(redis: Redis, replicas: list[Watchdog],
                           tasks: list[asyncio.Task[None]]) -> int:
    """Cancel the lease holder without releasing (a kill), and let its lease expire."""
    holder = next(n for n, w in enumerate(replicas) if w.lease.held)
    tasks[holder].cancel()
    await asyncio.gather(tasks[holder], return_exceptions=True)
    await redis.delete(replicas[holder].keys.watchdog_lease)
    return holder
