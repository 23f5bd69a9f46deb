"""The registry and one watchdog on a fake clock: heartbeat outcomes, hostile ids and
contexts, paging, group timeouts, maintenance windows, fencing and bounded batches."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from framework.consuming import BaseEventV1
from framework.testing import FakeClock
from providers.devices import (
    DeviceGroups,
    DeviceRegistry,
    Heartbeat,
    Watchdog,
    WatchdogSettings,
)
from tests.providers.devices.fleet_events import device_events, tally


def rig(redis: Redis, **settings: float) -> tuple[FakeClock, DeviceRegistry, Watchdog]:
    clock = FakeClock()
    watchdog = Watchdog(redis, clock=clock, settings=WatchdogSettings(**settings))  # type: ignore[arg-type]
    return clock, DeviceRegistry(redis, clock=clock), watchdog


async def test_heartbeat_outcomes_and_one_return_per_absence(redis: Redis) -> None:
    clock, registry, watchdog = rig(redis)
    assert await watchdog.lease.try_acquire()
    first = await registry.heartbeat(Heartbeat("m-1", timeout_s=60, group="meters"))
    assert first.outcome == "new"
    assert first.deadline_ms == int((clock.time() + 60) * 1000)
    await clock.advance(10)
    seen_ms = int(clock.time() * 1000)
    assert (await registry.heartbeat(Heartbeat("m-1", timeout_s=60))).outcome == "online"
    older = Heartbeat("m-1", timeout_s=60, seen_at_s=clock.time() - 5)
    assert (await registry.heartbeat(older)).outcome == "stale"
    await clock.advance(61)
    assert (await watchdog.sweep()).absent == 1
    assert (await watchdog.sweep()).absent == 0  # once
    late = Heartbeat("m-1", timeout_s=60, seen_at_s=clock.time() - 60)
    assert (await registry.heartbeat(late)).outcome == "late"  # from before the absence
    assert (await registry.heartbeat(Heartbeat("m-1", timeout_s=60))).outcome == "returned"
    await clock.advance(1)
    assert (await registry.heartbeat(Heartbeat("m-1", timeout_s=60))).outcome == "online"
    events = await device_events(redis)
    assert [e["type"] for e in events] == ["device.absent", "device.returned"]
    absent, returned = (BaseEventV1.model_validate(e, strict=False) for e in events)
    assert absent.payload["group"] == "meters"
    assert absent.payload["lastSeenMs"] == seen_ms
    assert absent.payload["deadlineMs"] + 1000 == absent.payload["detectedAtMs"]
    assert returned.payload["downtimeMs"] == 0  # seen at the very time it was found absent
    device = await registry.show("m-1")
    assert device is not None and (device.status, device.absences) == ("online", 1)


@pytest.mark.parametrize("device_id", ["../etc/passwd", "a b", "", "x" * 129, "-lead",
                                       "m-1\r\nSET x", None, 42])
async def test_a_hostile_device_id_is_refused_naming_it(redis: Redis, device_id: object) -> None:
    _, registry, _ = rig(redis)
    with pytest.raises(ValueError, match="deviceId: expected 1 to 128"):
        await registry.heartbeat(Heartbeat(device_id, timeout_s=60))  # type: ignore[arg-type]
    assert await redis.dbsize() == 0


async def test_a_huge_context_or_timeout_is_refused(redis: Redis) -> None:
    _, registry, _ = rig(redis)
    with pytest.raises(ValueError, match="device m-1: context over 4096 bytes"):
        await registry.heartbeat(Heartbeat("m-1", context={"blob": "x" * 5000}))
    with pytest.raises(ValueError, match="device m-1: timeout must be"):
        await registry.heartbeat(Heartbeat("m-1", timeout_s=-1))
    assert await redis.dbsize() == 0


async def test_register_pages_filters_and_moves_groups(redis: Redis) -> None:
    clock, registry, _ = rig(redis)
    for n in range(5):
        await registry.register(f"d-{n}", group="a", tags=["site:x", "b"])
    await registry.register("d-3", group="b", tags=[])
    await registry.heartbeat(Heartbeat("d-1", timeout_s=60))
    first = await registry.page(count=2)
    assert [d.id for d in first.devices] == ["d-0", "d-1"] and first.next_after == "d-1"
    second = await registry.page(after="d-1", count=10)
    assert [d.id for d in second.devices] == ["d-2", "d-3", "d-4"] and second.next_after is None
    assert [d.id for d in (await registry.page(group="a")).devices] == ["d-0", "d-1", "d-2",
                                                                       "d-4"]
    assert [d.id for d in (await registry.page(group="b")).devices] == ["d-3"]
    assert [d.id for d in (await registry.page(status="online")).devices] == ["d-1"]
    shown = await registry.show("d-0")
    assert shown is not None and shown.tags == ["b", "site:x"] and shown.status == "unknown"
    assert await registry.show("nobody") is None


async def test_group_timeout_beats_the_rules(redis: Redis) -> None:
    clock, registry, _ = rig(redis)
    await DeviceGroups(redis, clock=clock).set_timeout("slow", 7200)
    await registry.register("s-1", group="slow")
    beat = await registry.heartbeat(Heartbeat("s-1", timeout_s=60))
    assert beat.deadline_ms == int((clock.time() + 7200) * 1000)
    with pytest.raises(ValueError, match="group slow: timeout must be 1 s"):
        await DeviceGroups(redis, clock=clock).set_timeout("slow", 0)


async def test_maintenance_window_suppresses_then_reports_after_it(redis: Redis) -> None:
    clock, registry, watchdog = rig(redis)
    await watchdog.lease.try_acquire()
    groups = DeviceGroups(redis, clock=clock)
    now = clock.time()
    window = await groups.add_window("field", start_s=now + 30, end_s=now + 300,
                                     reason="planned outage", created_by="test")
    await registry.heartbeats([Heartbeat(f"f-{n}", timeout_s=60, group="field")
                               for n in range(3)])
    await clock.advance(61)  # deadlines pass inside the window
    swept = await watchdog.sweep()
    assert (swept.absent, swept.suppressed) == (0, 3)
    device = await registry.show("f-0")
    assert device is not None and device.suppressed_by == window.id
    assert device.deadline_ms == window.end_ms + 60_000
    await clock.advance(300)  # window over, one back within its period
    await registry.heartbeat(Heartbeat("f-0", timeout_s=60))
    await clock.advance(1)
    assert (await watchdog.sweep()).absent == 2
    assert dict(tally(await device_events(redis))) == {("device.absent", "f-1"): 1,
                                                       ("device.absent", "f-2"): 1}
    assert await groups.windows() == []  # over: dropped


async def test_window_checks_name_the_problem(redis: Redis) -> None:
    clock = FakeClock()
    groups = DeviceGroups(redis, clock=clock)
    now = clock.time()
    with pytest.raises(ValueError, match="end must be after start"):
        await groups.add_window("g", start_s=now, end_s=now, reason="r", created_by="t")
    with pytest.raises(ValueError, match="at most 31 days"):
        await groups.add_window("g", start_s=now, end_s=now + 40 * 86400, reason="r",
                                created_by="t")
    with pytest.raises(ValueError, match="reason must be 1 to 500"):
        await groups.add_window("g", start_s=now, end_s=now + 60, reason="", created_by="t")
    with pytest.raises(ValueError, match="group: expected"):
        await groups.add_window("../g", start_s=now, end_s=now + 60, reason="r",
                                created_by="t")
    window = await groups.add_window("g", start_s=now, end_s=now + 60, reason="r",
                                     created_by="t")
    assert await groups.open_window("g") == window
    assert await groups.remove_window("g", window.id) == window
    assert await groups.remove_window("g", window.id) is None


async def test_without_the_lease_nothing_is_swept(redis: Redis) -> None:
    clock, registry, watchdog = rig(redis)
    await registry.heartbeat(Heartbeat("m-1", timeout_s=1))
    await redis.set(watchdog.keys.watchdog_lease, "another-replica")
    await clock.advance(5)
    assert (await watchdog.sweep()).fenced
    assert await watchdog.step() is None  # a standby
    assert await device_events(redis) == []
    assert await redis.zcard(watchdog.keys.deadlines) == 1


async def test_sweeps_go_in_bounded_batches(redis: Redis) -> None:
    clock, registry, watchdog = rig(redis, batch_size=500, max_batches=2)
    await watchdog.lease.try_acquire()
    await registry.heartbeats([Heartbeat(f"b-{n:04d}", timeout_s=1) for n in range(1_600)])
    await clock.advance(2)
    assert (await watchdog.sweep_batch()).examined == 500
    second = await watchdog.sweep()  # at most 2 batches: 500 + 500
    assert (second.absent, second.examined) == (1000, 1000)
    assert second.next_deadline_ms is not None  # 100 still due
    third = await watchdog.sweep()
    assert third.absent == 100 and third.next_deadline_ms is None
    assert len(await device_events(redis)) == 1_600
