"""``connector-fleet migrate-keys`` killed with SIGKILL midway, then rerun: every key
ends under its tagged name with its value, none is lost or left behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis as sync_redis

from framework.core import KeyScheme
from framework.testing import RedisServer
from tests.cli import INSTALLED_CLI
from tests.conftest import REPO_ROOT
from tests.process import noaa_entry, write_config

CONNECTORS = 200
UNTAGGED, TAGGED = KeyScheme(), KeyScheme(tagged=True)


def migrate(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [INSTALLED_CLI, "migrate-keys"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_migrate_keys_killed_midway_then_rerun_moves_every_key_once(
    redis_server: RedisServer, sync: sync_redis.Redis, tmp_path: Path
) -> None:
    names = [f"source-{i}" for i in range(CONNECTORS)]
    config = write_config(
        tmp_path / "connectors.json",
        *[noaa_entry(n, "http://127.0.0.1:9", outputShards=4) for n in names],
    )
    for name in names:
        sync.hset(UNTAGGED.connector(name).state, mapping={"generation": "5", "etag": name})
        sync.hset(UNTAGGED.connector(name).versions, mapping={"item": name})
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "CONNECTORS_CONFIG_PATH": str(config),
        "FLEET_REDIS_HASH_TAGS": "1",
        "PYTHONUNBUFFERED": "1",
    }

    first = migrate(env)
    assert first.stdout is not None
    assert all("moved" in first.stdout.readline() for _ in range(30))  # 15 connectors
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    left = sum(sync.exists(UNTAGGED.connector(n).state) for n in names)
    rerun = migrate(env)
    rerun_out, rerun_err = rerun.communicate(timeout=120)
    again_out, _ = migrate(env).communicate(timeout=120)

    assert first.returncode == -signal.SIGKILL and 0 < left < CONNECTORS
    assert rerun.returncode == 0, rerun_err
    assert "0 keys moved" in again_out and "0 conflicts" in again_out
    for name in names:
        old, new = UNTAGGED.connector(name), TAGGED.connector(name, output_shards=4)
        assert sync.hgetall(new.state) == {"generation": "5", "etag": name}
        assert sync.hgetall(new.versions) == {"item": name}
        assert not sync.exists(old.state, old.versions)
