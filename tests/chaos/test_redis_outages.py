"""Redis restarts, outages and out-of-memory answers are survived, and nothing
is published twice or lost when Redis comes back."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from framework.testing import RedisServer, ReplayServer, Reply
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test

NAME = "weather-noaa"


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    with RedisServer(persistence=True) as server:
        yield server


def published_versions(client: sync_redis.Redis) -> Counter[tuple[str, str]]:
    return Counter((f["item_id"], f["version"]) for _, f in client.xrange("raw-input-signals"))


def test_worker_survives_redis_restarts_and_outages_without_duplicates(
    tmp_path: Path, durable_redis: RedisServer, replay: ReplayServer
) -> None:
    feed = ChangingFeed(size=200, change_every=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=100))
    worker = ConnectorProcess(NAME, redis_url=durable_redis.url, config=config,
                              log=tmp_path / "w.log")
    try:
        worker.wait_for("poll_completed")
        durable_redis.restart()  # a quick restart: the lease survives in the AOF
        after_restart = len(worker.events())
        worker.wait_for("poll_completed", after=after_restart, timeout_s=20)

        durable_redis.stop()  # an outage longer than the 2 s lease TTL
        time.sleep(3)
        down = len(worker.events())
        durable_redis.start()
        worker.wait_for("lease_acquired", after=down, timeout_s=30)
        worker.wait_for("poll_completed", after=down, timeout_s=30)
        assert worker.process.poll() is None
    finally:
        worker.close()

    client = sync_redis.Redis.from_url(durable_redis.url, decode_responses=True)
    published = published_versions(client)
    assert [key for key, n in published.items() if n > 1] == []
    versions = client.hgetall(f"connector:state:{NAME}:versions")
    assert len(versions) == 200
    assert all((item, version) in published for item, version in versions.items())
    client.close()


def test_out_of_memory_backs_off_is_reported_and_recovers(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    feed = ChangingFeed(size=300, change_every=1)  # every poll changes every item
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=50))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "w.log")
    try:
        worker.wait_for("poll_completed")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used))
        client.config_set("maxmemory-policy", "noeviction")
        try:
            first = worker.wait_for("poll_failed_redis", kind="oom")
            second = worker.wait_for(
                "poll_failed_redis", kind="oom", backoff_s=2 * first["backoff_s"]
            )
            assert second["backoff_s"] > first["backoff_s"]
            requests_while_oom = feed.requests
            time.sleep(1.0)
            # Backing off, not a hot loop: far fewer fetches than one per 50 ms.
            assert feed.requests - requests_while_oom <= 3
        finally:
            client.config_set("maxmemory", "0")
        recovered = len(worker.events())
        worker.wait_for("poll_completed", after=recovered, timeout_s=40)
    finally:
        worker.close()
    assert [key for key, n in published_versions(client).items() if n > 1] == []
    client.close()
