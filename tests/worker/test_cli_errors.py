"""Command-line errors an operator can act on: one line naming what and where, the
config exit code, never a traceback (issue 13: a wrong REDIS_URL scheme, ``state
show`` of an unknown connector, a misspelt capability in ``rules check``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as sync_redis

from framework.core import REDIS_URL_SCHEMES, ConfigError, read_settings
from framework.testing import RedisServer
from tests.cli import FleetCli
from tests.process import ConnectorProcess, noaa_entry, write_config

ACCEPTED = (
    "accepted: redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
    "redis+cluster://, rediss+cluster://")


@pytest.fixture
def cli(redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> FleetCli:
    return FleetCli(capsys, monkeypatch, {"REDIS_URL": redis_server.url})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "connectors.json", noaa_entry("weather-noaa", "http://x"))


def test_a_wrong_redis_url_scheme_is_one_line_naming_the_variable_and_the_schemes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "http://admin:hunter2-pw@redis.internal:6379")

    with pytest.raises(ConfigError) as caught:
        read_settings()

    assert str(caught.value) == (
        f"invalid settings: REDIS_URL: scheme 'http://' is not accepted ({ACCEPTED})")
    assert REDIS_URL_SCHEMES == ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel",
                                 "redis+cluster", "rediss+cluster")


@pytest.mark.parametrize("argv", [("status",), ("config", "check"), ("state", "show", "x")])
def test_every_command_refuses_a_wrong_redis_url_scheme_without_a_traceback(
    cli: FleetCli, config: Path, argv: tuple[str, ...],
) -> None:
    result = cli(*argv, env={"REDIS_URL": "http://x", "CONNECTORS_CONFIG_PATH": str(config)})

    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        f"invalid settings: REDIS_URL: scheme 'http://' is not accepted ({ACCEPTED})"]


def test_connector_run_refuses_a_wrong_redis_url_scheme_in_one_line(
    tmp_path: Path, config: Path,
) -> None:
    process = ConnectorProcess("weather-noaa", redis_url="http://x", config=config,
                               log=tmp_path / "run.log")
    try:
        assert process.wait() == 78
        output = process.log_path.read_text()
    finally:
        process.close()

    assert "Traceback" not in output
    assert output.strip().splitlines() == [
        f"invalid settings: REDIS_URL: scheme 'http://' is not accepted ({ACCEPTED})"]


def test_state_show_of_an_unknown_connector_exits_with_the_config_code(
    cli: FleetCli, config: Path, sync: sync_redis.Redis,
) -> None:
    env = {"CONNECTORS_CONFIG_PATH": str(config)}
    sync.hset("connector:state:removed-one", mapping={"lastPollTime": "t"})

    unknown = cli("state", "show", "weather-noaaa", env=env)
    configured = cli("state", "show", "weather-noaa", env=env)
    leftover = cli("state", "show", "removed-one", env=env)

    assert unknown.returncode == 78
    assert unknown.stderr.strip() == (
        "connector weather-noaaa: unknown (no state in Redis; configured: weather-noaa)")
    assert configured.returncode == 0  # configured, not polled yet: empty state
    assert json.loads(configured.stdout)["state"] == {}
    assert leftover.returncode == 0  # state of a removed connector is still shown
    assert json.loads(leftover.stdout)["state"] == {"lastPollTime": "t"}


def test_rules_check_refuses_a_misspelt_capability_and_names_the_likely_one(
    cli: FleetCli, tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"name": "v", "match": {"stream": "s"}, "steps": [
        {"id": "go", "call": "htp_call"}, {"call": "emit_evnt"}, {"call": "teleport"}]}]}))

    result = cli("rules", "check", "--path", str(rules))

    assert result.returncode == 78
    assert ("rule v, step go: capability 'htp_call' is not registered; did you mean "
            "'http_call'?") in result.stderr
    assert "rule v, step steps[1]: capability 'emit_evnt' is not registered; did you mean " \
           "'emit_event'?" in result.stderr
    # Nothing registered is close: it may live only in the signed catalog.
    assert "warning: rule v, step steps[2]: capability teleport: not registered" \
        in result.stderr
    assert "rules OK" not in result.stdout
