"""``connector-fleet audit verify`` / ``audit show`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from framework.audit import AuditChain
from framework.constants import AUDIT_STREAM
from framework.signing import PrivateKey
from framework.testing import FakeClock, RedisServer
from tests.conftest import REPO_ROOT
from worker.audit_cli import parse_since_ms

CLI = str(Path(sys.executable).parent / "connector-fleet")


async def audit_cli(redis_server: RedisServer, *args: str,
                    env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {**os.environ, "REDIS_URL": redis_server.url, **(env or {})}
    environment.pop("CATALOG_TRUSTED_KEYS", None)
    environment.pop("CATALOG_TRUSTED_KEYS_JSON", None)
    process = await asyncio.create_subprocess_exec(
        CLI, "audit", *args, env=environment, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _three_records(chain: AuditChain) -> None:
    await chain.append("executed", {"capability": "valve_control", "version": "1.1.0",
                                    "rule": "close-on-pressure", "step": "close"})
    await chain.append("refused", {"capability": "pump_control", "reason": "revoked"})
    await chain.append("precondition_failed", {"capability": "valve_control",
                                               "condition": "state.position == 'OPEN'"})


async def test_verify_passes_then_names_the_edited_record(
    redis: Redis, redis_server: RedisServer
) -> None:
    await _three_records(AuditChain(redis))
    code, out, err = await audit_cli(redis_server, "verify")
    assert code == 0, err
    assert out.startswith("audit chain OK: 3 record(s), head ")

    entries = await redis.xrange(AUDIT_STREAM)
    second_id, fields = entries[1]
    body = orjson.loads(fields["body"])
    body["reason"] = "nothing to see"
    await redis.delete(AUDIT_STREAM)
    for entry_id, entry in entries:
        forged = {**entry, "body": orjson.dumps(body).decode()} if entry_id == second_id else entry
        await redis.xadd(AUDIT_STREAM, forged, id=entry_id)
    code, out, err = await audit_cli(redis_server, "verify")
    assert code == 1
    assert f"BROKEN after 1 good record(s): record 2 (entry {second_id})" in err
    assert "does not match its hash" in err


async def test_verify_checks_signatures_against_the_given_keys(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    await _three_records(AuditChain(redis, signing_key=key))
    keys = tmp_path / "trusted.json"
    keys.write_bytes(orjson.dumps([key.public(name="audit").to_json()]))
    code, out, err = await audit_cli(redis_server, "verify", "--trusted-keys", str(keys),
                                     "--require-signatures")
    assert code == 0, err
    assert "3 record(s), 3 signed" in out

    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps([PrivateKey.generate().public().to_json()]))
    code, _, err = await audit_cli(redis_server, "verify", "--trusted-keys", str(other))
    assert code == 1 and "record 1" in err and "not a trusted key" in err


async def test_show_filters_by_capability_and_time(
    redis: Redis, redis_server: RedisServer
) -> None:
    await _three_records(AuditChain(redis))
    code, out, err = await audit_cli(redis_server, "show", "--capability", "valve_control",
                                     "--since", "1h", "--json")
    assert code == 0, err
    shown = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["seq"], r["kind"]) for r in shown] == [(1, "executed"),
                                                     (3, "precondition_failed")]
    code, out, _ = await audit_cli(redis_server, "show")
    lines = out.splitlines()
    assert len(lines) == 3
    assert "executed  valve_control@1.1.0  close-on-pressure/close" in lines[0]
    code, out, _ = await audit_cli(redis_server, "show", "--since", "2999-01-01T00:00:00Z")
    assert (code, out) == (0, "")


async def test_show_refuses_a_bad_since(redis_server: RedisServer, redis: Redis) -> None:
    code, _, err = await audit_cli(redis_server, "show", "--since", "yesterday")
    assert code == 64
    assert "--since 'yesterday': expected an ISO 8601 time" in err


def test_since_accepts_ages_and_zoned_times() -> None:
    clock = FakeClock(start_s=1_000_000.0)
    assert parse_since_ms("15m", clock) == (1_000_000 - 900) * 1000
    assert parse_since_ms("1970-01-01T00:00:01Z", clock) == 1000
    assert parse_since_ms(None, clock) is None
    with pytest.raises(ValueError, match="time zone"):
        parse_since_ms("2026-12-01T10:00:00", clock)
