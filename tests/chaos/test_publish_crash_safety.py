"""kill -9 at random moments never loses a change and never publishes one twice."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as sync_redis

from framework.polling.poller import content_version
from framework.testing import RedisServer, ReplayServer, Reply
from providers.noaa.schema import feature_id
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test

NAME = "weather-noaa"
KILLS = 12


def test_sigkill_at_random_moments_publishes_every_version_exactly_once(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    kill_at_random_moments(tmp_path, redis_server, replay, ChangingFeed(size=3000),
                           kills=KILLS, max_delay_s=0.6)


def test_sigkill_during_pipelined_multi_chunk_polls_publishes_every_version_once(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    # Every poll changes about 6,000 items: 6 or more chunks of COMMIT_CHUNK_ITEMS,
    # several in flight at once, so kills land between, during and after them.
    feed = ChangingFeed(size=12_000, change_every=2)
    kill_at_random_moments(tmp_path, redis_server, replay, feed, kills=8, max_delay_s=2.0)


def kill_at_random_moments(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer, feed: ChangingFeed,
    *, kills: int, max_delay_s: float,
) -> None:
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=50))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    rng = random.Random(20261122)

    for round_number in range(kills):
        worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                  log=tmp_path / f"run-{round_number}.log")
        try:
            worker.wait_for("lease_acquired")
            time.sleep(rng.uniform(0.05, max_delay_s))
            worker.signal(signal.SIGKILL)
            worker.wait()
        finally:
            worker.close()
        # As an operator would after a crash; the guarantee does not depend on it.
        client.delete(f"lease:{NAME}")

    final = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                             log=tmp_path / "final.log", args=("--once",))
    assert final.wait(timeout_s=30) == 0
    final.close()

    published = Counter(
        (fields["item_id"], fields["version"]) for _, fields in client.xrange("raw-input-signals")
    )
    duplicates = {key: n for key, n in published.items() if n > 1}
    assert duplicates == {}
    current = {feature_id(f): content_version(f) for f in feed.last_served}
    assert client.hgetall(f"connector:state:{NAME}:versions") == current
    missing = [key for key in current.items() if key not in published]
    assert missing == []
    # Most kills landed during real polling (on a loaded machine a few land before
    # the first request of their round).
    assert feed.requests > kills // 2
    client.close()
