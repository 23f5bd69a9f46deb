"""``connector-fleet catalog ...`` against a real Redis: in-process through the
command functions, and once end to end through the installed CLI."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.errors import RevokedCapabilityError
from framework.core.keys import catalog_definitions_key
from framework.core.logs import get_logger
from framework.testing import RedisServer
from framework.trust.catalog.signing import PrivateKey, load_trust_store
from framework.trust.catalog.store import Catalog, parse_definition
from tests.conftest import FIXTURES, REPO_ROOT
from worker.cli import build_parser
from worker.cli.catalog import run_catalog_command
from worker.cli.output import Console
from worker.exit_codes import ExitCode

CATALOG_LOG = get_logger(test="catalog")

CLI = str(Path(sys.executable).parent / "connector-fleet")
V110 = FIXTURES / "catalog" / "valve_control_v1.1.0.json"
V100 = FIXTURES / "catalog" / "valve_control_v1.0.0.json"


class Run:
    """One command's exit code and output."""

    def __init__(self, code: int, console: Console) -> None:
        assert isinstance(console.out, io.StringIO) and isinstance(console.err, io.StringIO)
        self.code, self.out, self.err = code, console.out.getvalue(), console.err.getvalue()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A key pair written by ``catalog keygen``; its public key is the trusted one."""
    return tmp_path / "keys"


async def catalog_cli(redis: Redis, *argv: str, keys: Path | None = None) -> Run:
    console = Console(out=io.StringIO(), err=io.StringIO())
    args = build_parser().parse_args(["catalog", *argv])
    environ = {"CATALOG_TRUSTED_KEYS": str(keys)} if keys is not None else {}
    return Run(await run_catalog_command(redis, args, console, environ=environ), console)


async def test_keygen_writes_a_private_key_only_its_owner_reads(redis: Redis,
                                                                keys: Path) -> None:
    run = await catalog_cli(redis, "keygen", "--out", str(keys))
    assert run.code == ExitCode.OK
    private, public = keys / "catalog-signing.pem", keys / "catalog-signing.pub.json"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = PrivateKey.load(private)
    assert key.key_id in run.out
    trusted = load_trust_store(public).keys
    assert [k.key_id for k in trusted] == [key.key_id]
    assert trusted[0].expires_at is None
    assert "PRIVATE" not in public.read_text()


async def test_keygen_never_overwrites_a_key(redis: Redis, keys: Path) -> None:
    await catalog_cli(redis, "keygen", "--out", str(keys))
    before = (keys / "catalog-signing.pem").read_bytes()
    run = await catalog_cli(redis, "keygen", "--out", str(keys))
    assert run.code == ExitCode.USAGE
    assert "already exists" in run.err
    assert (keys / "catalog-signing.pem").read_bytes() == before


async def test_keygen_writes_the_expiry_into_the_public_key(redis: Redis, keys: Path) -> None:
    await catalog_cli(redis, "keygen", "--out", str(keys), "--expires-in-days", "30")
    entry = orjson.loads((keys / "catalog-signing.pub.json").read_bytes())
    assert entry["expiresAt"] is not None and entry["expiresAt"].endswith("Z")


async def test_register_signs_and_stores_the_seed_definitions(redis: Redis, keys: Path) -> None:
    await catalog_cli(redis, "keygen", "--out", str(keys))
    run = await catalog_cli(redis, "register", "--file", str(V110), "--file", str(V100),
                            "--sign-with", str(keys / "catalog-signing.pem"), keys=keys)
    assert run.code == ExitCode.OK, run.err
    assert "registered valve_control@1.1.0" in run.out
    assert "registered valve_control@1.0.0" in run.out
    catalog = Catalog(redis, load_trust_store(keys), clock=SystemClock(), logger=CATALOG_LOG)
    resolved = await catalog.resolve("valve_control", "^1")
    assert resolved.definition.version == "1.1.0"
    assert resolved.key_id == PrivateKey.load(keys / "catalog-signing.pem").key_id


async def test_register_refuses_an_unsigned_file_and_keeps_the_good_ones(
    redis: Redis, keys: Path, tmp_path: Path
) -> None:
    await catalog_cli(redis, "keygen", "--out", str(keys))
    key = PrivateKey.load(keys / "catalog-signing.pem")
    signed = tmp_path / "signed.json"
    signed.write_bytes(parse_definition(V110.read_bytes(), source="x").signed_with(key).to_json())
    run = await catalog_cli(redis, "register", "--file", str(V100), "--file", str(signed),
                            keys=keys)
    assert run.code == ExitCode.FAILURE
    assert f"{V100}: capability valve_control@1.0.0: refused: the definition is not signed" \
        in run.err
    assert "registered valve_control@1.1.0" in run.out
    assert await redis.hkeys(catalog_definitions_key("valve_control")) == ["1.1.0"]


async def test_register_refuses_a_key_the_catalog_does_not_trust(
    redis: Redis, keys: Path, tmp_path: Path
) -> None:
    await catalog_cli(redis, "keygen", "--out", str(keys))
    other = tmp_path / "other"
    await catalog_cli(redis, "keygen", "--out", str(other))
    run = await catalog_cli(redis, "register", "--file", str(V110),
                            "--sign-with", str(other / "catalog-signing.pem"), keys=keys)
    assert run.code == ExitCode.FAILURE
    assert "not a trusted key" in run.err
    assert await redis.exists(catalog_definitions_key("valve_control")) == 0


async def test_register_names_the_file_and_field_of_an_invalid_definition(
    redis: Redis, keys: Path, tmp_path: Path
) -> None:
    await catalog_cli(redis, "keygen", "--out", str(keys))
    bad = tmp_path / "bad.json"
    raw = orjson.loads(V110.read_bytes())
    raw["sector"] = "SPACE"
    bad.write_bytes(orjson.dumps(raw))
    run = await catalog_cli(redis, "register", "--file", str(bad), "--file",
                            str(tmp_path / "missing.json"),
                            "--sign-with", str(keys / "catalog-signing.pem"), keys=keys)
    assert run.code == ExitCode.FAILURE
    assert f"{bad}: invalid capability definition: sector:" in run.err
    assert "cannot read" in run.err and "missing.json" in run.err


async def test_register_with_an_unreadable_signing_key_says_so(redis: Redis,
                                                               tmp_path: Path) -> None:
    run = await catalog_cli(redis, "register", "--file", str(V110),
                            "--sign-with", str(tmp_path / "nope.pem"), keys=tmp_path)
    assert run.code == ExitCode.CONFIG
    assert "cannot read signing key" in run.err and "nope.pem" in run.err


async def _registered(redis: Redis, keys: Path) -> PrivateKey:
    await catalog_cli(redis, "keygen", "--out", str(keys))
    run = await catalog_cli(redis, "register", "--file", str(V100), "--file", str(V110),
                            "--sign-with", str(keys / "catalog-signing.pem"), keys=keys)
    assert run.code == ExitCode.OK, run.err
    return PrivateKey.load(keys / "catalog-signing.pem")


async def test_list_shows_each_version_with_its_status(redis: Redis, keys: Path) -> None:
    key = await _registered(redis, keys)
    run = await catalog_cli(redis, "list", keys=keys)
    assert run.out.splitlines() == [f"valve_control@1.0.0  ok (key {key.key_id})",
                                    f"valve_control@1.1.0  ok (key {key.key_id})"]
    await catalog_cli(redis, "revoke", "valve_control", "--version", "<1.1.0",
                      "--reason", "CVE-2024-XXXX", keys=keys)
    listed = orjson.loads((await catalog_cli(redis, "list", "--json", keys=keys)).out)
    assert [(e["version"], e["revoked"] and e["revoked"]["reason"]) for e in listed] == [
        ("1.0.0", "CVE-2024-XXXX"), ("1.1.0", None)]


async def test_show_prints_the_stored_definition(redis: Redis, keys: Path) -> None:
    await _registered(redis, keys)
    run = await catalog_cli(redis, "show", "valve_control", "--version", "1.0.0")
    shown = orjson.loads(run.out)
    assert (shown["version"], shown["sector"]) == ("1.0.0", "INDUSTRIAL")
    assert shown["signature"].startswith("ed25519:")
    newest = orjson.loads((await catalog_cli(redis, "show", "valve_control")).out)
    assert newest["version"] == "1.1.0"
    missing = await catalog_cli(redis, "show", "pump_control")
    assert missing.code == ExitCode.FAILURE and "pump_control: not in the catalog" in missing.err


async def test_verify_passes_on_a_clean_catalog(redis: Redis, keys: Path) -> None:
    await _registered(redis, keys)
    run = await catalog_cli(redis, "verify", keys=keys)
    assert run.code == ExitCode.OK
    assert "catalog OK: 2 definition(s), 0 failed, 0 revoked, 1 trusted key(s)" in run.out


async def test_verify_lists_every_failure_and_exits_non_zero(
    redis: Redis, keys: Path, tmp_path: Path
) -> None:
    await _registered(redis, keys)
    stored_key = catalog_definitions_key("valve_control")
    document = orjson.loads(await redis.hget(stored_key, "1.0.0"))
    document["handler"] = "evil@6.6.6"
    await redis.hset(stored_key, "1.0.0", orjson.dumps(document).decode())
    unsigned = orjson.loads(await redis.hget(stored_key, "1.1.0"))
    unsigned["signature"] = None
    await redis.hset(stored_key, "1.1.0", orjson.dumps(unsigned).decode())
    run = await catalog_cli(redis, "verify", keys=keys)
    assert run.code == ExitCode.FAILURE
    assert "FAILED capability valve_control@1.0.0: refused: the signature" in run.err
    assert "FAILED capability valve_control@1.1.0: refused: the definition is not signed" \
        in run.err
    assert "2 failed" in run.err
    # Against keys that do not include the signer, everything fails.
    stranger = tmp_path / "stranger.json"
    stranger.write_bytes(orjson.dumps(PrivateKey.generate().public().to_json()))
    await redis.hset(stored_key, "1.0.0", orjson.dumps({**document, "handler":
                                                          "valve_control@1.0.0"}).decode())
    elsewhere = await catalog_cli(redis, "verify", "--trusted-keys", str(stranger))
    assert elsewhere.code == ExitCode.FAILURE
    assert "not a trusted key" in elsewhere.err


async def test_revoke_records_and_reports_the_versions_hit(redis: Redis, keys: Path) -> None:
    await _registered(redis, keys)
    run = await catalog_cli(redis, "revoke", "valve_control", "--version", "<1.1.0",
                            "--reason", "Correctif sécurité CVE-2024-XXXX", keys=keys)
    assert run.code == ExitCode.OK
    assert run.out.strip() == ("revoked valve_control <1.1.0 (1.0.0): "
                               "Correctif sécurité CVE-2024-XXXX")
    catalog = Catalog(redis, load_trust_store(keys), clock=SystemClock(), logger=CATALOG_LOG)
    assert (await catalog.resolve("valve_control", "^1")).definition.version == "1.1.0"
    with pytest.raises(RevokedCapabilityError, match="CVE-2024-XXXX"):
        await catalog.resolve("valve_control", "~1.0")


async def test_revoke_refuses_a_bad_range(redis: Redis, keys: Path) -> None:
    await _registered(redis, keys)
    run = await catalog_cli(redis, "revoke", "valve_control", "--version", "<one",
                            "--reason", "x", keys=keys)
    assert run.code == ExitCode.FAILURE
    assert "invalid version 'one'" in run.err


async def test_a_bad_trusted_keys_file_is_a_configuration_error(redis: Redis,
                                                                tmp_path: Path) -> None:
    bad = tmp_path / "trusted.json"
    bad.write_text("{nope")
    run = await catalog_cli(redis, "verify", "--trusted-keys", str(bad))
    assert run.code == ExitCode.CONFIG
    assert f"{bad}: not valid JSON" in run.err


@pytest.mark.slow
def test_the_installed_cli_runs_the_seed_workflow(
    redis_server: RedisServer, sync: sync_redis.Redis, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    env = {**os.environ, "REDIS_URL": redis_server.url,
           "CATALOG_TRUSTED_KEYS": str(keys / "catalog-signing.pub.json")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, "catalog", *args], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    assert cli("keygen", "--out", str(keys)).returncode == 0
    pem = str(keys / "catalog-signing.pem")
    registered = cli("register", "--file", str(V100), "--file", str(V110), "--sign-with", pem)
    assert registered.returncode == 0, registered.stderr
    assert cli("verify").returncode == 0
    revoked = cli("revoke", "valve_control", "--version", "<1.1.0", "--reason",
                  "Correctif sécurité CVE-2024-XXXX")
    assert revoked.returncode == 0, revoked.stderr
    listed = cli("list").stdout
    assert "valve_control@1.0.0  REVOKED (<1.1.0): Correctif sécurité CVE-2024-XXXX" in listed
    sync.hset(catalog_definitions_key("valve_control"), "1.1.0", V110.read_text())
    failed = cli("verify")
    assert failed.returncode == ExitCode.FAILURE
    assert "valve_control@1.1.0: refused: the definition is not signed" in failed.stderr
