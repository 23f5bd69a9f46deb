"""The connector key scheme: documented names without tags, one hash slot per script with
tags, stream shards chosen by a stable hash of the name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis.crc import key_slot

from framework.core import ConfigError, KeyScheme, shard_of
from framework.polling import ConnectorConfig, check_one_slot, load_fleet_config
from tests.conftest import REPO_ROOT
from worker.cli.connector_keys import connector_of_lease_key

UNTAGGED, TAGGED = KeyScheme(), KeyScheme(tagged=True)


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_untagged_names_are_the_documented_ones_even_with_shards() -> None:
    keys = UNTAGGED.connector("weather", output_shards=4)

    assert (keys.lease, keys.state, keys.versions, keys.metrics) == (
        "lease:weather",
        "connector:state:weather",
        "connector:state:weather:versions",
        "metrics:connector:weather",
    )
    assert UNTAGGED.connector("weather").output_stream == "raw-input-signals"
    assert keys.output_stream == f"raw-input-signals:{shard_of('weather', 4)}"


def test_tagged_names_carry_the_connector_as_hash_tag() -> None:
    keys = TAGGED.connector("weather")

    assert (keys.lease, keys.state, keys.versions, keys.metrics) == (
        "lease:{weather}",
        "connector:state:{weather}",
        "connector:state:{weather}:versions",
        "metrics:connector:{weather}",
    )
    assert len({slot(k) for k in (keys.lease, keys.state, keys.versions, keys.metrics)}) == 1


@pytest.mark.parametrize("name", ["a", "weather-noaa", "jira_prod", "x" * 60])
def test_tagged_sharded_commit_keys_hash_to_the_shard_streams_slot(name: str) -> None:
    keys = TAGGED.connector(name, output_stream="signals", output_shards=5)
    shard = shard_of(name, 5)

    assert keys.output_stream == f"{{signals:{shard}}}"
    assert keys.lease == f"lease:{{signals:{shard}}}:{name}"
    assert {slot(k) for k in [*keys.commit_keys, keys.metrics]} == {slot(keys.output_stream)}


def test_two_connectors_of_one_shard_keep_distinct_keys() -> None:
    names = [f"c{i}" for i in range(40)]
    by_shard: dict[int, list[str]] = {}
    for name in names:
        by_shard.setdefault(shard_of(name, 3), []).append(name)
    first, second = next(group for group in by_shard.values() if len(group) > 1)[:2]

    a = TAGGED.connector(first, output_shards=3)
    b = TAGGED.connector(second, output_shards=3)

    assert a.output_stream == b.output_stream
    assert {a.lease, a.state, a.versions, a.metrics}.isdisjoint(
        {b.lease, b.state, b.versions, b.metrics}
    )


def test_shards_are_crc16_of_the_name_as_redis_slots_and_spread() -> None:
    names = [f"connector-{i}" for i in range(200)]

    assert [shard_of(n, 16_384) for n in names] == [key_slot(n.encode()) for n in names]
    assert {shard_of(n, 4) for n in names} == {0, 1, 2, 3}
    assert TAGGED.shard_streams("s", 3) == ["{s:0}", "{s:1}", "{s:2}"]
    assert UNTAGGED.shard_streams("s", 2) == ["s:0", "s:1"]


def test_shard_mapping_is_the_same_in_another_process_with_another_hash_seed() -> None:
    names = ["alpha", "beta", "gamma", "delta", "weather-noaa"]
    code = f"from framework.core import shard_of; print([shard_of(n, 7) for n in {names!r}])"

    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)},
    ).stdout

    assert out.strip() == str([shard_of(n, 7) for n in names])


def test_shard_count_below_one_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="shards must be at least 1"):
        shard_of("a", 0)


def test_commit_keys_in_two_slots_are_refused_with_the_connector_and_slots() -> None:
    keys = TAGGED.connector("weather")  # the shared stream: no shards

    with pytest.raises(ConfigError) as raised:
        check_one_slot("weather", keys.commit_keys)

    message = str(raised.value)
    assert "connector weather" in message and "raw-input-signals (slot" in message
    assert "outputShards" in message


def test_output_shards_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"connectors": [{"name": "w", "type": "T", "outputShards": 3}]}')
    environment = {
        "ENABLED_CONNECTORS": "v",
        "CONNECTOR_V_TYPE": "T",
        "CONNECTOR_V_OUTPUT_SHARDS": "8",
    }

    from_file = load_fleet_config(path, environ={})
    from_environment = load_fleet_config(path, environ=environment)

    assert from_file.connectors["w"].output_shards == 3
    assert from_environment.connectors["v"].output_shards == 8


def test_output_shards_of_zero_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="output_shards|outputShards"):
        ConnectorConfig.model_validate({"name": "w", "type": "T", "outputShards": 0})


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("lease:weather", "weather"),
        ("lease:{weather}", "weather"),
        ("lease:{raw-input-signals:3}:weather", "weather"),
    ],
)
def test_the_connector_of_each_lease_key_form(key: str, name: str) -> None:
    assert connector_of_lease_key(key) == name
