"""Item 12a: ``connector-run --once`` says in its exit code whether its poll did its
job: 74 when the source fails, 69 when Redis is unreachable, within a bounded time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as sync_redis

from framework.testing import RedisServer, ReplayServer, Reply, free_port
from tests.process import ConnectorProcess, noaa_entry, write_config
from worker.exit_codes import ExitCode

pytestmark = pytest.mark.slow  # real processes

NAME = "weather-noaa"


@pytest.fixture(autouse=True)
def _flushed(sync: sync_redis.Redis) -> None:
    """Each test starts on an empty Redis: a lease of the same name left by another
    test on this worker's server would make ``--once`` exit 75."""
ITEM = {"id": "https://api.weather.gov/alerts/x1", "type": "Feature", "geometry": None,
        "properties": {"id": "x1", "event": "Test Warning", "severity": "Severe",
                       "sent": "2026-11-20T14:00:00Z"}}


def run_once(tmp_path: Path, redis_url: str, base_url: str) -> tuple[int, ConnectorProcess]:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, base_url))
    once = ConnectorProcess(NAME, redis_url=redis_url, config=config, log=tmp_path / "w.log",
                            args=("--once",))
    try:
        return once.wait(timeout_s=60), once
    finally:
        once.close()


def test_once_exits_poll_failed_when_the_source_fails(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    replay.route("/alerts/active", Reply(status=500, body={"error": "down"}))
    code, once = run_once(tmp_path, redis_server.url, replay.url)
    assert code == ExitCode.POLL_FAILED
    assert once.wait_for("poll_failed")


def test_once_exits_poll_failed_when_every_item_fails(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    broken = {**ITEM, "properties": {"id": "x1"}}  # no event, severity, sent: not a signal
    replay.route("/alerts/active", Reply(body={"type": "FeatureCollection",
                                                "features": [broken, broken | {"id": "x2"}]}))
    code, once = run_once(tmp_path, redis_server.url, replay.url)
    assert code == ExitCode.POLL_FAILED
    assert once.wait_for("item_failed")


def test_once_exits_ok_when_the_poll_succeeds(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    replay.route("/alerts/active", Reply(body={"type": "FeatureCollection",
                                                "features": [ITEM]}))
    code, _ = run_once(tmp_path, redis_server.url, replay.url)
    assert code == ExitCode.OK


def test_once_exits_unavailable_within_a_deadline_when_redis_is_unreachable(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/alerts/active", Reply(body={"type": "FeatureCollection", "features": []}))
    started = time.monotonic()
    code, once = run_once(tmp_path, f"redis://127.0.0.1:{free_port()}/0", replay.url)
    assert code == ExitCode.UNAVAILABLE
    assert time.monotonic() - started < 20  # the documented bound: ONCE_REDIS_DEADLINE_S + start
    assert once.wait_for("redis_unavailable", where="standby")
