"""With REDIS_URL unset and no Redis at the default address, connector-run
starts its own redis-server, keeps its data under FLEET_DATA_DIR, and later
runs reuse it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import redis as sync_redis

from framework.testing import ReplayServer, Reply, free_port
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

NAME = "weather-noaa"


@pytest.mark.slow
def test_embedded_redis_is_started_when_none_answers(
    tmp_path: Path, replay: ReplayServer
) -> None:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {"FLEET_REDIS_DEFAULT_URL": url, "FLEET_DATA_DIR": str(tmp_path / "data")}
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        first = ConnectorProcess(NAME, redis_url=None, config=config, log=tmp_path / "1.log",
                                 args=("--once",), env=env)
        assert first.wait() == 0
        started = first.wait_for("embedded_redis_started")
        first.close()
        assert started["data_dir"] == str(tmp_path / "data" / "redis")
        assert (tmp_path / "data" / "redis" / "redis.log").exists()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.xlen("raw-input-signals") == 5

        second = ConnectorProcess(NAME, redis_url=None, config=config, log=tmp_path / "2.log",
                                  args=("--once",), env=env)
        assert second.wait() == 0
        second.close()
        assert not any(e["event"] == "embedded_redis_started" for e in second.events())
        assert client.xlen("raw-input-signals") == 5  # state survived: nothing new
    finally:
        # shutdown closes the connection as the server stops
        with contextlib.suppress(sync_redis.exceptions.ConnectionError):
            client.shutdown(nosave=True)
        client.close()


def test_missing_redis_server_binary_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, "http://127.0.0.1:9"))
    env = {"FLEET_REDIS_DEFAULT_URL": f"redis://127.0.0.1:{free_port()}/0",
           "FLEET_DATA_DIR": str(tmp_path / "data"),
           "FLEET_REDIS_SERVER_BIN": "no-such-redis-server"}
    worker = ConnectorProcess(NAME, redis_url=None, config=config, log=tmp_path / "w.log",
                              env=env)
    assert worker.wait() == 69
    error = worker.wait_for("redis_unavailable")["error"]
    worker.close()
    assert "no-such-redis-server" in error and "apt-get install redis-server" in error
