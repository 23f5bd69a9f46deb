"""Rotating the catalog signing key under a running ``connector-fleet consume``: its
trusted-keys directory is updated the way the kubelet updates a Secret volume, and
without a restart a definition signed by the new key runs, one signed only by the
removed key is dead-lettered with the reason, and an invalid key file changes nothing."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from tests.helpers import wait_until
from tests.process import BIN, ConnectorProcess
from tests.trust.test_trusted_keys import SecretVolume

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test


def definition(version: str) -> dict[str, object]:
    return {"id": "emit_event", "version": version, "sector": "IOT",
            "description": "XADD a base event to a stream", "handler": "emit_event@1.0.0",
            "preconditions": [], "postconditions": [], "rollbackStrategy": "none",
            "signature": None}


def forward(event_type: str, version_range: str) -> dict[str, object]:
    return {"name": event_type, "match": {"streams": ["in"], "type": event_type},
            "steps": [{"id": "fwd", "call": "emit_event", "version": version_range, "params": {
                "stream": "out", "event": {"type": "forwarded", "source": "test",
                                           "payload": {"n": "{{ payload.n }}"}}}}]}


# 1.0.0 is signed by the old key, 2.0.0 by the new one.
RULES = {"version": 1, "rules": [forward("legacy", "~1.0"), forward("current", "^2")]}


def event(event_type: str, n: int) -> dict[str, bytes]:
    return {"event": orjson.dumps({"type": event_type, "source": "sensor", "payload": {"n": n}})}


@pytest.fixture
def catalog_cli(redis_server: RedisServer) -> Callable[..., str]:
    def run(*args: str) -> str:
        done = subprocess.run([str(BIN / "connector-fleet"), "catalog", *args],
                              env={"REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture
def consume(tmp_path: Path,
            redis_server: RedisServer) -> Iterator[Callable[[Path], ConnectorProcess]]:
    """Starts ``connector-fleet consume`` trusting the keys of a directory."""
    (tmp_path / "rules.json").write_bytes(orjson.dumps(RULES))
    started: list[ConnectorProcess] = []

    def start(trusted_keys: Path) -> ConnectorProcess:
        process = ConnectorProcess(
            "consumer", redis_url=redis_server.url, config=tmp_path / "connectors.json",
            log=tmp_path / "consume.log",
            command=("connector-fleet", "consume", "--start-id", "0"),
            env={"RULES_PATH": str(tmp_path / "rules.json"),
                 "CATALOG_TRUSTED_KEYS": str(trusted_keys)})
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def key_id(public_file: Path) -> str:
    return str(orjson.loads(public_file.read_bytes())["keyId"])


def dead_letter_reasons(sync: sync_redis.Redis) -> list[str]:
    return [fields["reason"] for _, fields in sync.xrange("in:dlq")]


def test_a_rotated_key_directory_applies_without_a_restart(
    sync: sync_redis.Redis, tmp_path: Path, catalog_cli: Callable[..., str],
    consume: Callable[[Path], ConnectorProcess],
) -> None:
    signing = tmp_path / "signing"  # where definitions are signed: never on the executors
    catalog_cli("keygen", "--out", str(signing), "--name", "old")
    catalog_cli("keygen", "--out", str(signing), "--name", "new")
    old_id, new_id = key_id(signing / "old.pub.json"), key_id(signing / "new.pub.json")
    for version, key in (("1.0.0", "old"), ("2.0.0", "new")):
        path = tmp_path / f"emit_event_v{version}.json"
        path.write_bytes(orjson.dumps(definition(version)))
        catalog_cli("register", "--file", str(path), "--sign-with", str(signing / f"{key}.pem"),
                    "--trusted-keys", str(signing))
    volume = SecretVolume(tmp_path / "catalog-keys")
    volume.write({"old.pub.json": (signing / "old.pub.json").read_bytes()})
    process = consume(volume.root)

    process.wait_for("catalog_enabled", trusted_keys=[old_id])
    sync.xadd("in", event("legacy", 1))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("out") == 1)
    sync.xadd("in", event("current", 2))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("in:dlq") == 1)
    assert f"signed by key {new_id}, which is not a trusted key" in dead_letter_reasons(sync)[0]

    # An update whose new file is invalid (and which drops the old key) changes nothing.
    volume.write({"new.pub.json": (signing / "new.pub.json").read_bytes(),
                  "broken.pub.json": b'{"publicKey": "not base64!"}'})
    rejected = process.wait_for("trust_store_reload_rejected", timeout_s=30)
    assert rejected["level"] == "error"
    assert str(volume.root / "broken.pub.json") in rejected["reason"]
    assert "publicKey must be the base64 of a 32-byte Ed25519 key" in rejected["reason"]
    sync.xadd("in", event("legacy", 3))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("out") == 2)

    # The rotation: the new key in, the old key out.
    volume.write({"new.pub.json": (signing / "new.pub.json").read_bytes()})
    reloaded = process.wait_for("trust_store_reloaded", timeout_s=30)
    assert (reloaded["added"], reloaded["removed"]) == ([new_id], [old_id])
    sync.xadd("in", event("current", 4))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("out") == 3)
    sync.xadd("in", event("legacy", 5))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("in:dlq") == 2)
    assert f"signed by key {old_id}, which is no longer trusted" in dead_letter_reasons(sync)[1]
    forwarded = [orjson.loads(fields["event"])["payload"]["n"] for _, fields in sync.xrange("out")]
    assert [str(n) for n in forwarded] == ["1", "3", "4"]

    # SIGHUP reads the keys again too.
    seen = len(process.events())
    process.signal(signal.SIGHUP)
    again = process.wait_for("trust_store_reloaded", after=seen, timeout_s=30)
    assert (again["added"], again["removed"], again["trusted_keys"]) == ([], [], [new_id])
    # One process all along.
    assert process.process.poll() is None
    assert [e["event"] for e in process.events()].count("catalog_enabled") == 1
    # Key ids in the log, never the keys.
    for name in ("old", "new"):
        public_key = orjson.loads((signing / f"{name}.pub.json").read_bytes())["publicKey"]
        assert public_key not in process.log_path.read_text()
