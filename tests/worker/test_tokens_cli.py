"""``connector-fleet tokens create|list|revoke`` against a real Redis: the token is
printed once and stored only as its hash, listed without it, revoked by id, and each
change is in the audit chain."""

from __future__ import annotations

import hashlib

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from worker.cli.main import run_fleet_command
from worker.exit_codes import ExitCode


@pytest.fixture(autouse=True)
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)


def test_create_list_and_revoke_a_token(sync: sync_redis.Redis,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_fleet_command(["tokens", "create", "--role", "operator",
                              "--name", "on-call"]) == ExitCode.OK
    created = capsys.readouterr()
    token = created.out.strip()
    assert token.startswith("cft_") and len(token) > 40
    assert "printed once" in created.err
    stored = sync.hgetall("fleet:api:tokens")
    assert list(stored) == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in str(stored)

    assert run_fleet_command(["tokens", "list", "--json"]) == ExitCode.OK
    (listed,) = orjson.loads(capsys.readouterr().out)
    assert (listed["name"], listed["role"]) == ("on-call", "operator")
    assert listed["createdBy"].startswith("cli:")

    assert run_fleet_command(["tokens", "revoke", listed["id"]]) == ExitCode.OK
    assert sync.exists("fleet:api:tokens") == 0
    assert run_fleet_command(["tokens", "revoke", listed["id"]]) == ExitCode.FAILURE
    assert "no token" in capsys.readouterr().err
    actions = [orjson.loads(f["body"])["action"] for _, f in sync.xrange("audit:chain")]
    assert actions == ["token_create", "token_revoke"]


def test_an_unknown_role_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_fleet_command(["tokens", "create", "--role", "root", "--name", "x"])
    assert exited.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err
