"""``connector-fleet leases``, ``lease release``, ``state`` and ``migrate-keys`` under
both key schemes (FLEET_REDIS_HASH_TAGS): the exact key is printed in every mode."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.core import KeyScheme
from framework.testing import RedisServer
from tests.cli import FleetCli
from tests.process import noaa_entry, write_config

SHARDED = KeyScheme(tagged=True).connector("weather-sharded", output_shards=3).lease


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "connectors.json",
        noaa_entry("weather-noaa", "http://127.0.0.1:9"),
        noaa_entry("weather-sharded", "http://127.0.0.1:9", outputShards=3),
    )


@pytest.fixture
def cli(
    redis_server: RedisServer,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> FleetCli:
    return FleetCli(
        capsys, monkeypatch, {"REDIS_URL": redis_server.url, "CONNECTORS_CONFIG_PATH": str(config)}
    )


def test_leases_print_the_untagged_key_by_default(cli: FleetCli, sync: sync_redis.Redis) -> None:
    sync.set("lease:weather-noaa", "host-a:1:abc", ex=30)
    sync.set("lease:weather-sharded", "host-b:2:def", ex=30)

    listed = orjson.loads(cli("leases", "--json").stdout)
    table = cli("leases").stdout

    assert [(lease["connector"], lease["key"]) for lease in listed] == [
        ("weather-noaa", "lease:weather-noaa"),
        ("weather-sharded", "lease:weather-sharded"),
    ]
    assert "KEY" in table.splitlines()[0] and "lease:weather-noaa" in table


def test_leases_print_the_tagged_key_with_hash_tags_on(
    cli: FleetCli, sync: sync_redis.Redis
) -> None:
    sync.set("lease:{weather-noaa}", "host-a:1:abc", ex=30)
    sync.set(SHARDED, "host-b:2:def", ex=30)
    sync.set("lease:removed-one", "host-c:3:ghi", ex=30)  # not configured any more

    listed = orjson.loads(cli("leases", "--json", env={"FLEET_REDIS_HASH_TAGS": "1"}).stdout)

    assert [(lease["connector"], lease["key"]) for lease in listed] == [
        ("removed-one", "lease:removed-one"),
        ("weather-noaa", "lease:{weather-noaa}"),
        ("weather-sharded", SHARDED),
    ]
    assert SHARDED.startswith("lease:{raw-input-signals:")


def test_lease_release_and_state_use_the_tagged_keys(cli: FleetCli, sync: sync_redis.Redis) -> None:
    tags = {"FLEET_REDIS_HASH_TAGS": "true"}
    sync.set(SHARDED, "host-b:2:def", ex=30)
    state = KeyScheme(tagged=True).connector("weather-noaa")
    sync.hset(state.state, mapping={"generation": "3"})
    sync.hset(state.versions, mapping={"a": "1"})

    released = cli("lease", "release", "weather-sharded", "--yes", env=tags)
    shown = cli("state", "show", "weather-noaa", env=tags)
    reset = cli("state", "reset", "weather-noaa", "--yes", env=tags)

    assert released.returncode == 0 and f"released {SHARDED}" in released.stdout
    assert sync.get(SHARDED) is None
    assert orjson.loads(shown.stdout)["state"] == {"generation": "3"}
    assert reset.returncode == 0 and "connector:state:{weather-noaa}" in reset.stdout
    assert not sync.exists(state.state, state.versions)


def test_migrate_keys_without_hash_tags_has_nothing_to_do(cli: FleetCli) -> None:
    result = cli("migrate-keys")

    assert result.returncode == 78 and "FLEET_REDIS_HASH_TAGS is off" in result.stderr


def test_migrate_keys_moves_the_keys_and_a_rerun_moves_nothing(
    cli: FleetCli, sync: sync_redis.Redis
) -> None:
    tags = {"FLEET_REDIS_HASH_TAGS": "1"}
    sync.hset("connector:state:weather-noaa", mapping={"generation": "4"})
    sync.hset("metrics:connector:weather-noaa", mapping={"totalPolls": "9"})

    first = cli("migrate-keys", env=tags)
    second = cli("migrate-keys", env=tags)

    assert first.returncode == 0, first.stderr
    assert (
        "weather-noaa: connector:state:weather-noaa -> connector:state:{weather-noaa}: moved"
    ) in first.stdout
    assert "2 keys moved" in first.stdout
    assert second.returncode == 0 and "0 keys moved" in second.stdout
    assert sync.hgetall("connector:state:{weather-noaa}") == {"generation": "4"}
    assert not sync.exists("connector:state:weather-noaa", "metrics:connector:weather-noaa")
