"""Item 7: Redis out of memory while an instance waits for the lease. ``SET NX`` is
refused at maxmemory even when the key exists; the standby must back off and keep
waiting (not exit 1 with an ``OutOfMemoryError`` traceback), and take over once
memory frees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as sync_redis

from framework.testing import RedisServer, ReplayServer, Reply
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # a real process backing off for seconds

NAME = "weather-noaa"


def test_standby_backs_off_on_out_of_memory_and_takes_over_when_memory_frees(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    feed = ChangingFeed(size=5, change_every=1)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    # Another instance holds the lease for 3 s, then "crashes" (the key expires).
    client.set(f"lease:{NAME}", "other-host:1:abc", px=3000)
    client.config_set("maxmemory", str(int(client.info("memory")["used_memory"])))
    client.config_set("maxmemory-policy", "noeviction")
    standby = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                               log=tmp_path / "w.log")
    try:
        first = standby.wait_for("redis_unavailable", where="standby", kind="oom")
        standby.wait_for("redis_unavailable", where="standby", kind="oom",
                         backoff_s=2 * first["backoff_s"])
        time.sleep(4)  # past the other holder's TTL: still out of memory, still waiting
        assert standby.process.poll() is None
        assert client.get(f"lease:{NAME}") is None
        client.config_set("maxmemory", "0")
        freed = len(standby.events())
        standby.wait_for("lease_acquired", after=freed, timeout_s=40)
        standby.wait_for("poll_completed", after=freed, timeout_s=10)
        events = standby.events()
    finally:
        client.config_set("maxmemory", "0")
        standby.close()
        client.close()
    waits = [e for e in events if e.get("event") == "redis_unavailable"]
    # Backing off, not a hot loop: 0.5 s doubling over ~6 s is a handful of tries.
    assert 2 <= len(waits) <= 8
    assert not any(e.get("event") in ("worker_crashed", "(not json)") for e in events)
