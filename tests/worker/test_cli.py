"""``connector-fleet`` operator commands against a real Redis."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from tests.cli import CliRun, FleetCli, installed_cli
from tests.conftest import REPO_ROOT
from tests.process import noaa_entry, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "connectors.json",
        noaa_entry("weather-noaa", "http://127.0.0.1:9"),
        noaa_entry("weather-off", "http://127.0.0.1:9", enabled=False),
    )


@pytest.fixture
def cli(redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> FleetCli:
    """``connector-fleet`` in this process, on the private Redis."""
    return FleetCli(capsys, monkeypatch, {"REDIS_URL": redis_server.url})


def fleet_cli(cli: FleetCli, *args: str, config: Path) -> CliRun:
    return cli(*args, env={"CONNECTORS_CONFIG_PATH": str(config)})


def test_status_shows_lease_metrics_and_health(
    cli: FleetCli, config: Path, sync: sync_redis.Redis
) -> None:
    sync.set("lease:weather-noaa", "host-a:42:abc", ex=30)
    sync.hset("metrics:connector:weather-noaa", mapping={
        "connectorName": "weather-noaa", "lastPollTime": "2026-11-22T10:00:00.000Z",
        "lastSuccessTime": "2026-11-22T10:00:00.000Z", "failedPolls": 2,
        "itemsPublished": 17})

    table = fleet_cli(cli, "status", config=config)
    as_json = fleet_cli(cli, "status", "--json", config=config)

    assert table.returncode == 0, table.stderr
    header, noaa, off = table.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "TYPE", "ENABLED"]
    assert "host-a:42:abc" in noaa and "17" in noaa and "UNHEALTHY: no successful poll" in noaa
    assert off.split()[:3] == ["weather-off", "NOAA_WEATHER", "no"]
    rows = orjson.loads(as_json.stdout)
    assert rows[0]["leaseHolder"] == "host-a:42:abc" and rows[0]["itemsPublished"] == 17
    assert 0 < rows[0]["leaseTtlMs"] <= 30_000 and rows[0]["healthy"] is False


def test_leases_lists_holders_and_release_needs_confirmation(
    cli: FleetCli, config: Path, sync: sync_redis.Redis
) -> None:
    sync.set("lease:weather-noaa", "host-a:42:abc", ex=30)
    sync.set("lease:jira-prod", "host-b:7:def", ex=30)

    listed = fleet_cli(cli, "leases", "--json", config=config)
    refused = fleet_cli(cli, "lease", "release", "weather-noaa", config=config)
    released = fleet_cli(cli, "lease", "release", "weather-noaa", "--yes",
                         config=config)

    assert [lease["connector"] for lease in orjson.loads(listed.stdout)] == [
        "jira-prod", "weather-noaa"]
    assert refused.returncode == 1 and "not released" in refused.stderr
    assert released.returncode == 0 and "was host-a:42:abc" in released.stdout
    assert sync.get("lease:weather-noaa") is None and sync.get("lease:jira-prod")


def test_config_check_prints_the_resolved_config_with_secrets_redacted(
    cli: FleetCli, tmp_path: Path
) -> None:
    entry = noaa_entry("weather-noaa", "${NOAA_URL:-http://127.0.0.1:9}")
    entry["providerConfig"]["userAgent"] = "fleet (ops@example.com)"
    config = write_config(tmp_path / "c.json", entry)

    result = fleet_cli(cli, "config", "check", config=config)

    assert result.returncode == 0, result.stderr
    resolved = orjson.loads(result.stdout)["connectors"][0]
    assert resolved["providerConfig"]["baseUrl"] == "http://127.0.0.1:9"


def test_config_check_lists_every_problem(cli: FleetCli, tmp_path: Path) -> None:
    bad_interval = noaa_entry("a", "http://x", pollIntervalMs=0)
    bad_type = noaa_entry("b", "http://x", type="NOPE")
    bad_provider = noaa_entry("c", "http://x")
    bad_provider["providerConfig"] = {"baseUrl": "not a url"}
    missing_var = noaa_entry("d", "${NOT_SET_ANYWHERE}")
    config = write_config(tmp_path / "c.json", bad_interval, bad_type, bad_provider, missing_var)

    result = fleet_cli(cli, "config", "check", config=config)

    assert result.returncode == 78
    assert "connector a: pollIntervalMs: Input should be greater than 0" in result.stderr
    assert "NOT_SET_ANYWHERE" in result.stderr and "connector d" in result.stderr
    # The entries that do parse are checked for type and provider config in the same run.
    assert "connector b: unknown type 'NOPE'; known types: " in result.stderr
    assert "NOAA_WEATHER connector c: providerConfig.baseUrl" in result.stderr


def test_state_show_and_reset(
    cli: FleetCli, config: Path, sync: sync_redis.Redis
) -> None:
    sync.hset("connector:state:weather-noaa", mapping={"generation": "4", "etag": '"e1"'})
    sync.hset("connector:state:weather-noaa:versions", mapping={"a": "v1", "b": "v2"})

    shown = orjson.loads(fleet_cli(cli, "state", "show", "weather-noaa", "--items",
                                   config=config).stdout)
    reset = fleet_cli(cli, "state", "reset", "weather-noaa", "--yes", config=config)

    assert shown["state"]["etag"] == '"e1"' and shown["itemCount"] == 2
    assert shown["itemVersions"] == {"a": "v1", "b": "v2"}
    assert reset.returncode == 0 and "2 item versions forgotten" in reset.stdout
    assert not sync.exists("connector:state:weather-noaa", "connector:state:weather-noaa:versions")


def test_stream_tail_prints_entries_as_json_lines(
    cli: FleetCli, config: Path, sync: sync_redis.Redis
) -> None:
    for n in range(3):
        sync.xadd("raw-input-signals", {"connector": "weather-noaa", "item_id": f"i{n}",
                                        "version": "v", "payload": orjson.dumps({"n": n})})

    result = fleet_cli(cli, "stream", "tail", "raw-input-signals", "--from-start", "--count", "3",
                       config=config)

    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["payload"] for line in lines] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert lines[0]["item_id"] == "i0" and "-" in lines[0]["id"]


def test_unreachable_redis_is_a_clear_error(cli: FleetCli, config: Path) -> None:
    from framework.testing import free_port

    result = cli("leases", env={"REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0",
                                "CONNECTORS_CONFIG_PATH": str(config)})

    assert result.returncode == 69
    assert "Redis unavailable at redis://:***@127.0.0.1" in result.stderr


def test_the_installed_cli_shows_the_status(
    redis_server: RedisServer, config: Path, sync: sync_redis.Redis
) -> None:
    sync.set("lease:weather-noaa", "host-a:42:abc", ex=30)
    env = {**os.environ, "REDIS_URL": redis_server.url, "CONNECTORS_CONFIG_PATH": str(config)}

    result = installed_cli("status", "--json", env=env)

    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)[0]["leaseHolder"] == "host-a:42:abc"


def test_the_installed_cli_checks_the_rules() -> None:
    result = installed_cli("rules", "check", "--path", str(REPO_ROOT / "rules.json"),
                           env=dict(os.environ))

    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("streams: raw-input-signals, recoco-events, "
                                           "sensor-readings")


def test_the_installed_cli_runs_a_benchmark(redis_server: RedisServer) -> None:
    result = installed_cli("bench", "publish", "--items", "200", "--redis-url",
                           redis_server.url, env=dict(os.environ))

    assert result.returncode == 0, result.stderr
    assert "(20 published)" in result.stdout
