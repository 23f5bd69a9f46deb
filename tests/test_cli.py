"""``connector-fleet`` operator commands against a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from tests.conftest import REPO_ROOT
from tests.process import noaa_entry, write_config

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test

CLI = str(Path(sys.executable).parent / "connector-fleet")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "connectors.json",
        noaa_entry("weather-noaa", "http://127.0.0.1:9"),
        noaa_entry("weather-off", "http://127.0.0.1:9", enabled=False),
    )


def fleet_cli(*args: str, redis_server: RedisServer, config: Path,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "REDIS_URL": redis_server.url,
                   "CONNECTORS_CONFIG_PATH": str(config), **(env or {})}
    return subprocess.run([CLI, *args], env=environment, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_status_shows_lease_metrics_and_health(
    redis_server: RedisServer, config: Path, sync: sync_redis.Redis
) -> None:
    sync.set("lease:weather-noaa", "host-a:42:abc", ex=30)
    sync.hset("metrics:connector:weather-noaa", mapping={
        "connectorName": "weather-noaa", "lastPollTime": "2026-11-22T10:00:00.000Z",
        "lastSuccessTime": "2026-11-22T10:00:00.000Z", "failedPolls": 2,
        "itemsPublished": 17})

    table = fleet_cli("status", redis_server=redis_server, config=config)
    as_json = fleet_cli("status", "--json", redis_server=redis_server, config=config)

    assert table.returncode == 0, table.stderr
    header, noaa, off = table.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "TYPE", "ENABLED"]
    assert "host-a:42:abc" in noaa and "17" in noaa and "UNHEALTHY: no successful poll" in noaa
    assert off.split()[:3] == ["weather-off", "NOAA_WEATHER", "no"]
    rows = orjson.loads(as_json.stdout)
    assert rows[0]["leaseHolder"] == "host-a:42:abc" and rows[0]["itemsPublished"] == 17
    assert 0 < rows[0]["leaseTtlMs"] <= 30_000 and rows[0]["healthy"] is False


def test_leases_lists_holders_and_release_needs_confirmation(
    redis_server: RedisServer, config: Path, sync: sync_redis.Redis
) -> None:
    sync.set("lease:weather-noaa", "host-a:42:abc", ex=30)
    sync.set("lease:jira-prod", "host-b:7:def", ex=30)

    listed = fleet_cli("leases", "--json", redis_server=redis_server, config=config)
    refused = fleet_cli("lease", "release", "weather-noaa", redis_server=redis_server,
                        config=config)
    released = fleet_cli("lease", "release", "weather-noaa", "--yes",
                         redis_server=redis_server, config=config)

    assert [lease["connector"] for lease in orjson.loads(listed.stdout)] == [
        "jira-prod", "weather-noaa"]
    assert refused.returncode == 1 and "not released" in refused.stderr
    assert released.returncode == 0 and "was host-a:42:abc" in released.stdout
    assert sync.get("lease:weather-noaa") is None and sync.get("lease:jira-prod")


def test_config_check_prints_the_resolved_config_with_secrets_redacted(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    entry = noaa_entry("weather-noaa", "${NOAA_URL:-http://127.0.0.1:9}")
    entry["providerConfig"]["userAgent"] = "fleet (ops@example.com)"
    config = write_config(tmp_path / "c.json", entry)

    result = fleet_cli("config", "check", redis_server=redis_server, config=config)

    assert result.returncode == 0, result.stderr
    resolved = orjson.loads(result.stdout)["connectors"][0]
    assert resolved["providerConfig"]["baseUrl"] == "http://127.0.0.1:9"


def test_config_check_lists_every_problem(redis_server: RedisServer, tmp_path: Path) -> None:
    bad_interval = noaa_entry("a", "http://x", pollIntervalMs=0)
    bad_type = noaa_entry("b", "http://x", type="NOPE")
    bad_provider = noaa_entry("c", "http://x")
    bad_provider["providerConfig"] = {"baseUrl": "not a url"}
    missing_var = noaa_entry("d", "${NOT_SET_ANYWHERE}")
    config = write_config(tmp_path / "c.json", bad_interval, bad_type, bad_provider, missing_var)

    result = fleet_cli("config", "check", redis_server=redis_server, config=config)

    assert result.returncode == 78
    assert "connector a: pollIntervalMs: Input should be greater than 0" in result.stderr
    assert "NOT_SET_ANYWHERE" in result.stderr and "connector d" in result.stderr
    # The entries that do parse are checked for type and provider config in the same run.
    assert "connector b: unknown type 'NOPE'; known types: " in result.stderr
    assert "NOAA_WEATHER connector c: providerConfig.baseUrl" in result.stderr


def test_state_show_and_reset(
    redis_server: RedisServer, config: Path, sync: sync_redis.Redis
) -> None:
    sync.hset("connector:state:weather-noaa", mapping={"generation": "4", "etag": '"e1"'})
    sync.hset("connector:state:weather-noaa:versions", mapping={"a": "v1", "b": "v2"})

    shown = orjson.loads(fleet_cli("state", "show", "weather-noaa", "--items",
                                   redis_server=redis_server, config=config).stdout)
    reset = fleet_cli("state", "reset", "weather-noaa", "--yes", redis_server=redis_server,
                      config=config)

    assert shown["state"]["etag"] == '"e1"' and shown["itemCount"] == 2
    assert shown["itemVersions"] == {"a": "v1", "b": "v2"}
    assert reset.returncode == 0 and "2 item versions forgotten" in reset.stdout
    assert not sync.exists("connector:state:weather-noaa", "connector:state:weather-noaa:versions")


def test_stream_tail_prints_entries_as_json_lines(
    redis_server: RedisServer, config: Path, sync: sync_redis.Redis
) -> None:
    for n in range(3):
        sync.xadd("raw-input-signals", {"connector": "weather-noaa", "item_id": f"i{n}",
                                        "version": "v", "payload": orjson.dumps({"n": n})})

    result = fleet_cli("stream", "tail", "raw-input-signals", "--from-start", "--count", "3",
                       redis_server=redis_server, config=config)

    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["payload"] for line in lines] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert lines[0]["item_id"] == "i0" and "-" in lines[0]["id"]


def test_unreachable_redis_is_a_clear_error(config: Path, tmp_path: Path) -> None:
    from framework.testing import free_port

    environment = {**os.environ, "REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0",
                   "CONNECTORS_CONFIG_PATH": str(config)}
    result = subprocess.run([CLI, "leases"], env=environment, capture_output=True, text=True,
                            timeout=30)

    assert result.returncode == 69
    assert "Redis unavailable at redis://:***@127.0.0.1" in result.stderr
