"""The watchdog process killed with SIGKILL in the middle of a sweep: its restart
(after the lease expires) reports every remaining absence, and none twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from framework.testing import FakeClock, RedisServer
from providers.devices import DeviceKeys, DeviceRegistry, Heartbeat
from tests.process import ConnectorProcess, write_config
from tests.providers.devices.fleet_events import device_events, tally

DEVICES = [f"pump-{i:05d}" for i in range(10_000)]


def watch_process(tmp_path: Path, server: RedisServer, name: str) -> ConnectorProcess:
    return ConnectorProcess(
        name, redis_url=server.url, config=write_config(tmp_path / "connectors.json"),
        log=tmp_path / f"{name}.log",
        command=("connector-fleet", "devices", "watch", "--batch", "5", "--interval-s",
                 "0.05", "--lease-ttl-s", "1"))


def wait_until(check: object, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} within {timeout_s} s")


@pytest.mark.slow
async def test_kill_9_mid_sweep_then_restart_reports_each_absence_once(
        redis: Redis, sync: sync_redis.Redis, redis_server: RedisServer,
        tmp_path: Path) -> None:
    # Seen an hour ago with T = 60 s: every deadline has passed.
    past = FakeClock(start_s=time.time() - 3600)
    await DeviceRegistry(redis, clock=past).heartbeats(
        [Heartbeat(d, timeout_s=60, group="pumps") for d in DEVICES])
    keys = DeviceKeys()
    first = watch_process(tmp_path, redis_server, "first")
    try:
        wait_until(lambda: sync.xlen(keys.events_stream) > 0, timeout_s=30,
                   what="no absence reported")
        first.signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.close()
    reported_before_restart = sync.xlen(keys.events_stream)
    assert 0 < reported_before_restart < len(DEVICES), "the kill came after the sweep"
    second = watch_process(tmp_path, redis_server, "second")
    try:
        wait_until(lambda: sync.zcard(keys.deadlines) == 0, timeout_s=60,
                   what="deadlines left")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        second.close()
    counts = tally(await device_events(redis))
    assert counts == {("device.absent", d): 1 for d in DEVICES}
    assert sync.get(keys.watchdog_lease) is None  # released on SIGTERM
