"""The real ``connector-run`` process: lease hand-over, signals, reload, ops endpoint."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from framework.testing import RedisServer, ReplayServer, Reply, free_port
from tests.helpers import wait_until
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

NAME = "weather-noaa"


@pytest.fixture
def feed(replay: ReplayServer) -> ChangingFeed:
    feed = ChangingFeed(size=40)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    return feed


@pytest.fixture
def start(tmp_path: Path, redis_server: RedisServer) -> Iterator[object]:
    started: list[ConnectorProcess] = []

    def _start(config: Path, *args: str, label: str = "a") -> ConnectorProcess:
        process = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                   log=tmp_path / f"{label}-{len(started)}.log", args=args)
        started.append(process)
        return process

    yield _start
    for process in started:
        process.close()




def test_sigterm_drains_releases_the_lease_and_exits_0(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, sync: sync_redis.Redis,
    start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    worker = start(config)  # type: ignore[operator]
    worker.wait_for("poll_completed")
    assert sync.get(f"lease:{NAME}", ) is not None

    worker.signal(signal.SIGTERM)

    assert worker.wait() == 0
    assert sync.get(f"lease:{NAME}") is None
    worker.wait_for("lease_released")
    metrics = sync.hgetall(f"metrics:connector:{NAME}")
    assert int(metrics["successfulPolls"]) >= 1 and metrics["connectorName"] == NAME
    assert int(metrics["itemsPublished"]) == sync.xlen("raw-input-signals")


@pytest.mark.slow
def test_second_instance_waits_and_takes_over_when_the_lease_is_deleted(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, sync: sync_redis.Redis,
    start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, leaseTtlSeconds=30))
    first = start(config, label="first")  # type: ignore[operator]
    first.wait_for("lease_acquired")
    second = start(config, label="second")  # type: ignore[operator]
    second.wait_for("standby")
    assert sync.get(f"lease:{NAME}").startswith  # holder is readable
    holder = sync.get(f"lease:{NAME}")
    assert f":{first.pid}:" in holder
    assert not any(e["event"] == "poll_completed" for e in second.events())

    # The operator's force release: redis-cli DEL lease:weather-noaa
    sync.delete(f"lease:{NAME}")

    wait_until(lambda: f":{second.pid}:" in (sync.get(f"lease:{NAME}") or ""), timeout_s=5)
    second.wait_for("poll_completed")
    first.wait_for("lease_lost")
    first.wait_for("standby", after=1)
    assert 0 < sync.ttl(f"lease:{NAME}") <= 30


@pytest.mark.slow
def test_a_paused_holder_cannot_publish_when_resumed(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, sync: sync_redis.Redis,
    start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=200))
    first = start(config, label="first")  # type: ignore[operator]
    first.wait_for("poll_completed")
    second = start(config, label="second")  # type: ignore[operator]
    second.wait_for("standby")

    first.signal(signal.SIGSTOP)  # past the 2 s TTL: the lease expires
    second.wait_for("poll_completed", timeout_s=10)
    resumed_at = len(first.events())
    first.signal(signal.SIGCONT)

    first.wait_for("lease_lost", after=resumed_at)
    time.sleep(1.0)
    published_after_resume = [
        e for e in first.events()[resumed_at:]
        if e["event"] == "poll_completed" and e["published"] > 0
    ]
    assert published_after_resume == []
    versions = [(e["item_id"], e["version"]) for _, e in sync.xrange("raw-input-signals")]
    assert len(versions) == len(set(versions))


@pytest.mark.slow
def test_sighup_applies_a_new_interval_without_restart(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=60_000))
    worker = start(config)  # type: ignore[operator]
    worker.wait_for("poll_completed")
    time.sleep(0.5)
    assert feed.requests == 1

    write_config(config, noaa_entry(NAME, replay.url, pollIntervalMs=100))
    worker.signal(signal.SIGHUP)

    worker.wait_for("config_reloaded", changed=["pollIntervalMs"])
    wait_until(lambda: feed.requests >= 4, timeout_s=5)
    assert worker.process.poll() is None


@pytest.mark.slow
def test_sighup_with_an_invalid_config_keeps_the_running_one(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=100))
    worker = start(config)  # type: ignore[operator]
    worker.wait_for("poll_completed")

    config.write_text('{"connectors": [ {"name": "weather-noaa", ')
    worker.signal(signal.SIGHUP)

    rejected = worker.wait_for("reload_rejected")
    assert "invalid JSON at line 1" in rejected["reason"]
    seen = feed.requests
    wait_until(lambda: feed.requests > seen + 2, timeout_s=5)


@pytest.mark.slow
def test_sighup_disabling_the_connector_stops_it_gracefully(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, sync: sync_redis.Redis,
    start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    worker = start(config)  # type: ignore[operator]
    worker.wait_for("poll_completed")

    write_config(config, noaa_entry(NAME, replay.url, enabled=False))
    worker.signal(signal.SIGHUP)

    assert worker.wait() == 0
    worker.wait_for("connector_disabled")
    assert sync.get(f"lease:{NAME}") is None


def test_unknown_connector_exits_with_the_config_code_and_says_why(
    tmp_path: Path, replay: ReplayServer, start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry("other", replay.url))
    worker = start(config)  # type: ignore[operator]

    assert worker.wait() == 78
    error = worker.wait_for("config_invalid")
    assert "weather-noaa" in error["error"] and "configured: other" in error["error"]


def test_ops_endpoint_serves_health_and_prometheus_metrics(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, start: object,
) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=200))
    worker = start(config, "--metrics-port", str(port))  # type: ignore[operator]
    worker.wait_for("poll_completed")

    health = httpx.get(f"http://127.0.0.1:{port}/health")
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text

    assert health.status_code == 200
    assert health.json()["role"] == "active" and health.json()["connector"] == NAME
    assert f'connector_polls_total{{connector="{NAME}",outcome="success"}}' in metrics
    assert f'connector_lease_held{{connector="{NAME}"}} 1.0' in metrics
    assert "connector_poll_duration_seconds_bucket" in metrics


def test_once_runs_a_single_poll_and_exits(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, sync: sync_redis.Redis,
    start: object,
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    worker = start(config, "--once")  # type: ignore[operator]

    assert worker.wait() == 0
    assert feed.requests == 1
    assert sync.xlen("raw-input-signals") == 40
    assert sync.get(f"lease:{NAME}") is None


def test_once_while_another_instance_holds_the_lease_exits_75(
    tmp_path: Path, replay: ReplayServer, feed: ChangingFeed, sync: sync_redis.Redis,
    start: object,
) -> None:
    sync.set(f"lease:{NAME}", "other-host:1:abc", ex=30)
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    worker = start(config, "--once")  # type: ignore[operator]

    assert worker.wait() == 75
    assert feed.requests == 0
    assert sync.get(f"lease:{NAME}") == "other-host:1:abc"


@pytest.mark.slow
def test_sigterm_lets_the_running_poll_finish(
    tmp_path: Path, replay: ReplayServer, sync: sync_redis.Redis, start: object,
) -> None:
    feed = ChangingFeed(size=10)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body(), delay_s=1.5))
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    worker = start(config)  # type: ignore[operator]
    worker.wait_for("lease_acquired")
    wait_until(lambda: feed.requests == 1)  # the request is under way

    worker.signal(signal.SIGTERM)

    assert worker.wait() == 0
    events = [e["event"] for e in worker.events()]
    assert events.index("stop_requested") < events.index("poll_completed")
    assert sync.xlen("raw-input-signals") == 10


def test_drain_is_bounded_and_a_cancelled_poll_publishes_nothing(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer, sync: sync_redis.Redis,
) -> None:
    feed = ChangingFeed(size=10)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body(), delay_s=8))
    config = write_config(tmp_path / "c.json",
                          noaa_entry(NAME, replay.url, requestTimeoutMs=20_000))
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "w.log", env={"FLEET_DRAIN_TIMEOUT_S": "0.5"})
    try:
        worker.wait_for("lease_acquired")
        wait_until(lambda: feed.requests == 1)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout_s=5) == 0
        worker.wait_for("poll_cancelled")
    finally:
        worker.close()
    assert sync.xlen("raw-input-signals") == 0
    assert sync.get(f"lease:{NAME}") is None
