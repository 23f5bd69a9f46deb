"""``connector-fleet audit verify`` / ``audit show`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.keys import AUDIT_CHECKPOINT_KEY, AUDIT_STREAM
from framework.testing import FakeClock, RedisServer
from framework.trust.audit.chain import AuditChain, canonical_body
from framework.trust.catalog.signing import PrivateKey
from tests.cli import FleetCli, installed_cli
from worker.cli.audit import parse_since_ms

_TRUST_VARIABLES = ("CATALOG_TRUSTED_KEYS", "CATALOG_TRUSTED_KEYS_JSON", "AUDIT_SIGNING_KEY")


class AuditCli:
    """``connector-fleet audit ARGS`` in this process: (exit code, stdout, stderr)."""

    def __init__(self, cli: FleetCli) -> None:
        self._cli = cli

    async def __call__(self, *args: str,
                       env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
        run = await asyncio.to_thread(self._cli, "audit", *args, env=env)
        return run.returncode, run.stdout, run.stderr


@pytest.fixture
def audit_cli(redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> AuditCli:
    env: dict[str, str | None] = {"REDIS_URL": redis_server.url}
    env.update(dict.fromkeys(_TRUST_VARIABLES))
    return AuditCli(FleetCli(capsys, monkeypatch, env))


async def _three_records(chain: AuditChain) -> None:
    await chain.append("executed", {"capability": "valve_control", "version": "1.1.0",
                                    "rule": "close-on-pressure", "step": "close"})
    await chain.append("refused", {"capability": "pump_control", "reason": "revoked"})
    await chain.append("precondition_failed", {"capability": "valve_control",
                                               "condition": "state.position == 'OPEN'"})


async def test_verify_passes_then_names_the_edited_record(
    redis: Redis, audit_cli: AuditCli
) -> None:
    await _three_records(AuditChain(redis))
    code, out, err = await audit_cli("verify")
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
    code, out, err = await audit_cli("verify")
    assert code == 1
    assert f"BROKEN after 1 good record(s): record 2 (entry {second_id})" in err
    assert "does not match its hash" in err


async def test_verify_checks_signatures_against_the_given_keys(
    redis: Redis, audit_cli: AuditCli, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    await _three_records(AuditChain(redis, signing_key=key))
    keys = tmp_path / "trusted.json"
    keys.write_bytes(orjson.dumps([key.public(name="audit").to_json()]))
    code, out, err = await audit_cli("verify", "--trusted-keys", str(keys),
                                     "--require-signatures")
    assert code == 0, err
    assert "3 record(s), 3 signed" in out

    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps([PrivateKey.generate().public().to_json()]))
    code, _, err = await audit_cli("verify", "--trusted-keys", str(other))
    assert code == 1 and "record 1" in err and "not a trusted key" in err


async def test_show_filters_by_capability_and_time(
    redis: Redis, audit_cli: AuditCli
) -> None:
    await _three_records(AuditChain(redis))
    code, out, err = await audit_cli("show", "--capability", "valve_control",
                                     "--since", "1h", "--json")
    assert code == 0, err
    shown = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["seq"], r["kind"]) for r in shown] == [(1, "executed"),
                                                     (3, "precondition_failed")]
    code, out, _ = await audit_cli("show")
    lines = out.splitlines()
    assert len(lines) == 3
    assert "executed  valve_control@1.1.0  close-on-pressure/close" in lines[0]
    code, out, _ = await audit_cli("show", "--since", "2999-01-01T00:00:00Z")
    assert (code, out) == (0, "")


async def test_show_refuses_a_bad_since(audit_cli: AuditCli, redis: Redis) -> None:
    code, _, err = await audit_cli("show", "--since", "yesterday")
    assert code == 64
    assert "--since 'yesterday': expected an ISO 8601 time" in err


def test_since_accepts_ages_and_zoned_times() -> None:
    clock = FakeClock(start_s=1_000_000.0)
    assert parse_since_ms("15m", clock) == (1_000_000 - 900) * 1000
    assert parse_since_ms("1970-01-01T00:00:01Z", clock) == 1000
    assert parse_since_ms(None, clock) is None
    with pytest.raises(ValueError, match="time zone"):
        parse_since_ms("2026-12-01T10:00:00", clock)


async def _records(chain: AuditChain, count: int) -> None:
    for n in range(count):
        await chain.append("executed", {"capability": "valve_control", "n": n})


async def test_export_trim_and_verify_the_archive_against_the_checkpoint(
    redis: Redis, audit_cli: AuditCli, tmp_path: Path
) -> None:
    await _records(AuditChain(redis), 6)
    stored = await redis.xrange(AUDIT_STREAM)
    code, out, err = await audit_cli("export")
    assert code == 0, err
    assert [orjson.loads(line) for line in out.splitlines()] == [
        {"id": i, "body": f["body"], "hash": f["hash"], "sig": None} for i, f in stored]
    assert "exported 6 record(s), seq 1..6" in err

    archive = tmp_path / "audit-2026-12.jsonl"
    code, out, err = await audit_cli("export", "--to", str(archive),
                                     "--before", "5")
    assert code == 0, err
    assert "exported 4 record(s), seq 1..4" in out and "audit trim --before 5" in out
    assert len(archive.read_bytes().splitlines()) == 4
    code, _, err = await audit_cli("export", "--to", str(archive))
    assert code == 64 and "exists; not overwritten" in err
    assert await redis.xlen(AUDIT_STREAM) == 6

    code, out, err = await audit_cli("trim", "--before", "5", "--yes")
    assert code == 0, err
    assert out.startswith("trimmed 4 record(s), seq 1..4, from audit:chain; checkpoint at "
                          "seq 4")
    assert "unsigned (AUDIT_SIGNING_KEY is not set)" in out
    code, out, err = await audit_cli("verify")
    assert code == 0, err
    assert out.startswith("audit chain OK: 2 record(s), after the checkpoint at seq 4 "
                          "(unsigned, ")
    code, out, err = await audit_cli("verify", "--file", str(archive))
    assert code == 0, err
    assert out.startswith("audit archive OK: 4 record(s), seq 1..4, last hash "
                          f"{stored[3][1]['hash']}")
    assert out.rstrip().endswith("joins the checkpoint at seq 4")

    code, out, err = await audit_cli("trim", "--keep", "1", "--yes")
    assert code == 0 and "trimmed 1 record(s), seq 5..5" in out, err
    code, _, err = await audit_cli("verify", "--file", str(archive))
    assert code == 1
    assert ("audit archive does not join the live chain: the file(s) end at seq 4, but the "
            "live chain was trimmed up to seq 5") in err


async def test_trim_refuses_without_what_to_remove_or_a_confirmation(
    redis: Redis, audit_cli: AuditCli
) -> None:
    await _records(AuditChain(redis), 3)
    code, _, err = await audit_cli("trim", "--yes")
    assert code == 64
    assert "audit trim: give --keep N (records to keep) or --before SEQ" in err
    code, _, err = await audit_cli("trim", "--keep", "1")
    assert code == 1 and "not trimmed (confirm, or pass --yes)" in err
    assert await redis.xlen(AUDIT_STREAM) == 3
    assert not await redis.exists(AUDIT_CHECKPOINT_KEY)
    code, out, err = await audit_cli("trim", "--keep", "3", "--yes")
    assert (code, out) == (0, "audit:chain: nothing to trim\n"), err


async def test_trim_signs_the_checkpoint_and_verify_reports_a_tampered_one(
    redis: Redis, audit_cli: AuditCli, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    key_file = tmp_path / "audit.pem"
    key_file.write_text(key.to_pem())
    keys = tmp_path / "trusted.json"
    keys.write_bytes(orjson.dumps([key.public(name="audit").to_json()]))
    await _records(AuditChain(redis, signing_key=key), 5)
    code, out, err = await audit_cli("trim", "--keep", "2", "--yes",
                                     env={"AUDIT_SIGNING_KEY": str(key_file)})
    assert code == 0, err
    assert f"signed with key {key.key_id}" in out
    code, out, err = await audit_cli("verify", "--trusted-keys", str(keys),
                                     "--require-signatures")
    assert code == 0, err
    assert "2 record(s), 2 signed, after the checkpoint at seq 3 (signed, " in out

    body = orjson.loads(await redis.hget(AUDIT_CHECKPOINT_KEY, "body") or "")
    body["at"] = "2020-01-01T00:00:00.000Z"
    await redis.hset(AUDIT_CHECKPOINT_KEY, "body", canonical_body(body).decode())
    code, _, err = await audit_cli("verify", "--trusted-keys", str(keys))
    assert code == 1
    assert (f"audit chain BROKEN after 0 good record(s): the checkpoint {AUDIT_CHECKPOINT_KEY} "
            "(seq 3, entry ") in err
    assert "bad signature" in err


async def test_verify_reports_records_removed_by_hand(
    redis: Redis, audit_cli: AuditCli
) -> None:
    await _records(AuditChain(redis), 4)
    third_id = (await redis.xrange(AUDIT_STREAM))[2][0]
    await redis.xtrim(AUDIT_STREAM, minid=third_id, approximate=False)
    code, _, err = await audit_cli("verify")
    assert code == 1
    assert (f"record 3 (entry {third_id}): the chain starts at seq 3 but there is no "
            "checkpoint: records 1..2 were removed without one") in err


async def test_export_refuses_a_bad_age(audit_cli: AuditCli, redis: Redis) -> None:
    code, _, err = await audit_cli("export", "--older-than", "a while")
    assert code == 64 and "--older-than 'a while': expected an age" in err
    await _records(AuditChain(redis), 2)
    code, out, err = await audit_cli("export", "--older-than", "1h")
    assert (code, out) == (0, ""), err
    assert "exported 0 record(s) to stdout" in err


async def test_the_installed_cli_verifies_the_chain(
    redis: Redis, redis_server: RedisServer
) -> None:
    await _three_records(AuditChain(redis))
    env = {k: v for k, v in os.environ.items() if k not in _TRUST_VARIABLES}
    result = await asyncio.to_thread(installed_cli, "audit", "verify",
                                     env={**env, "REDIS_URL": redis_server.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("audit chain OK: 3 record(s), head ")


async def test_several_chains_are_verified_one_by_one_with_chain(
    redis: Redis, audit_cli: AuditCli
) -> None:
    # FLEET_AUDIT_CHAINS=2: each consumer process appends to audit:chain:I.
    await _three_records(AuditChain(redis, chain=1))
    await AuditChain(redis, chain=0).append("executed", {"capability": "valve_control"})
    two = {"FLEET_AUDIT_CHAINS": "2"}

    assert await redis.xlen("audit:chain:1") == 3 and not await redis.exists(AUDIT_STREAM)
    code, _, err = await audit_cli("verify", env=two)
    assert code == 64 and "give --chain 0 .. 1" in err
    code, out, err = await audit_cli("--chain", "1", "verify", env=two)
    assert code == 0 and out.startswith("audit chain OK: 3 record(s)"), err
    code, out, err = await audit_cli("--chain", "0", "verify", env=two)
    assert code == 0 and out.startswith("audit chain OK: 1 record(s)"), err
    code, _, err = await audit_cli("--chain", "1", "verify")
    assert code == 64 and "FLEET_AUDIT_CHAINS above 1" in err
