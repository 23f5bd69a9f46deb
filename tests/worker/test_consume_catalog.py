"""The real ``connector-fleet consume`` with trusted keys: every call goes through the
signed catalog (seven steps, audit chain), and a revocation made with the CLI while
it runs stops the capability; without trusted keys it says it runs unsigned."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from tests.helpers import wait_until
from tests.process import BIN, ConnectorProcess

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test

DEFINITION = {
    "id": "emit_event", "version": "1.0.0", "sector": "IOT",
    "description": "XADD a base event to a stream", "handler": "emit_event@1.0.0",
    "preconditions": [{"check": "params.stream == 'out'", "description": "only to out"}],
    "postconditions": [], "rollbackStrategy": "none", "signature": None,
}
RULES = {"version": 1, "rules": [{
    "name": "forward", "match": {"streams": ["in"], "type": "reading"},
    "steps": [{"id": "fwd", "call": "emit_event", "version": "^1", "params": {
        "stream": "out",
        "event": {"type": "forwarded", "source": "test", "payload": {"n": "{{ payload.n }}"}}}}],
}]}


def reading(n: int) -> dict[str, bytes]:
    return {"event": orjson.dumps({"type": "reading", "source": "sensor", "payload": {"n": n}})}


@pytest.fixture
def catalog_cli(redis_server: RedisServer, tmp_path: Path) -> Callable[..., str]:
    """``connector-fleet catalog ...`` trusting the key ``keygen --out keys`` writes."""
    env = {"REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin",
           "CATALOG_TRUSTED_KEYS": str(tmp_path / "keys" / "catalog-signing.pub.json")}

    def run(*args: str) -> str:
        done = subprocess.run([str(BIN / "connector-fleet"), "catalog", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture
def consume(tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[..., ConnectorProcess]]:
    (tmp_path / "rules.json").write_bytes(orjson.dumps(RULES))
    started: list[ConnectorProcess] = []

    def start(**env: str) -> ConnectorProcess:
        process = ConnectorProcess(
            "consumer", redis_url=redis_server.url, config=tmp_path / "connectors.json",
            log=tmp_path / f"consume-{len(started)}.log",
            command=("connector-fleet", "consume", "--start-id", "0"),
            env={"RULES_PATH": str(tmp_path / "rules.json"), **env})
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def test_signed_calls_run_and_a_revocation_stops_them_in_a_running_consumer(
    sync: sync_redis.Redis, tmp_path: Path, catalog_cli: Callable[..., str],
    consume: Callable[..., ConnectorProcess], redis_server: RedisServer,
) -> None:
    catalog_cli("keygen", "--out", str(tmp_path / "keys"))
    definition = tmp_path / "emit_event_v1.0.0.json"
    definition.write_bytes(orjson.dumps(DEFINITION))
    catalog_cli("register", "--file", str(definition),
                "--sign-with", str(tmp_path / "keys" / "catalog-signing.pem"))
    catalog_cli("keygen", "--out", str(tmp_path / "keys"), "--name", "audit")
    consumer = consume(CATALOG_TRUSTED_KEYS=str(tmp_path / "keys" / "catalog-signing.pub.json"),
                       AUDIT_SIGNING_KEY=str(tmp_path / "keys" / "audit.pem"))
    consumer.wait_for("catalog_enabled")

    sync.xadd("in", reading(1))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("out") == 1)
    wait_until(lambda: sync.xlen("audit:chain") >= 1)
    audited = [orjson.loads(fields["body"]) for _, fields in sync.xrange("audit:chain")]
    assert [(r["capability"], r["version"], r["kind"]) for r in audited] == [
        ("emit_event", "1.0.0", "executed")], audited

    catalog_cli("revoke", "emit_event", "--version", "<2", "--reason", "leaks payloads")
    time.sleep(1.0)  # the bound: a revocation applies within one second
    sync.xadd("in", reading(2))  # type: ignore[arg-type]

    wait_until(lambda: sync.xlen("in:dlq") == 1)
    _, letter = sync.xrange("in:dlq")[0]
    assert "revoked" in str(letter) and "leaks payloads" in str(letter)
    assert sync.xlen("out") == 1
    # Every record (the execution, then the refusal) is signed with the audit key.
    verified = subprocess.run(
        [str(BIN / "connector-fleet"), "audit", "verify", "--require-signatures",
         "--trusted-keys", str(tmp_path / "keys" / "audit.pub.json")],
        env={"REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert sync.xlen("audit:chain") >= 2


def test_an_unreadable_trust_store_is_a_configuration_error(
    consume: Callable[..., ConnectorProcess], tmp_path: Path,
) -> None:
    consumer = consume(CATALOG_TRUSTED_KEYS=str(tmp_path / "no-such-keys"))

    assert consumer.wait(30) == 78
    error = consumer.wait_for("config_invalid")["error"]
    assert "cannot read trusted keys" in error and "no-such-keys" in error


def test_without_trusted_keys_the_consumer_says_capabilities_run_unsigned(
    sync: sync_redis.Redis, consume: Callable[..., ConnectorProcess],
) -> None:
    consumer = consume()

    warning = consumer.wait_for("catalog_disabled")

    assert "unsigned" in warning["reason"]
    sync.xadd("in", reading(1))  # type: ignore[arg-type]
    wait_until(lambda: sync.xlen("out") == 1)
