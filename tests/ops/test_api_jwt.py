"""OIDC / JWT bearer tokens verified against a JWKS file, over real HTTP: a valid
token's role is honoured and its subject audited; expired, foreign-signed, unsigned,
wrong issuer or audience, and role-less tokens are refused; a bad JWKS file is a
configuration error naming it."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from redis.asyncio import Redis

from framework.core import ConfigError
from framework.polling import load_fleet_config
from tests.ops.api_client import empty_fleet, serving
from tests.process import noaa_entry, write_config
from worker.ops import ApiOptions, JwtVerifier

ISSUER = "https://idp.example/realms/ops"
AUDIENCE = "connector-fleet"


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1"})


@pytest.fixture
def verifier(signing_key: RSAKey, tmp_path: Path) -> JwtVerifier:
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(KeySet([signing_key]).as_dict(private=False)))
    return JwtVerifier.from_file(jwks, issuer=ISSUER, audience=AUDIENCE, role_claim="roles")


def issued(key: RSAKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-42", "preferred_username": "alice",
            "iat": now, "exp": now + 300, "roles": ["viewer", "operator"], **claims}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


async def test_a_valid_jwt_acts_with_its_highest_role_and_is_audited(
    redis: Redis, tmp_path: Path, signing_key: RSAKey, verifier: JwtVerifier,
) -> None:
    fleet = load_fleet_config(write_config(tmp_path / "c.json",
                                           noaa_entry("noaa", "http://127.0.0.1:9")))
    token = issued(signing_key)
    async with serving(redis, lambda: fleet, options=ApiOptions(jwt=verifier)) as (api, _):
        me = await api.call("GET", "/api/v1/whoami", token)
        paused = await api.call("POST", "/api/v1/connectors/{name}/pause", token, name="noaa",
                                json_body={"reason": "idp test"})
        purge = await api.call("DELETE", "/api/v1/streams/{stream}/dead-letters", token,
                               stream="s")
    assert me.json()["actor"] == {"id": "jwt:u-42", "name": "alice", "role": "operator"}
    assert paused.status_code == 200
    assert purge.status_code == 403
    ((_, fields),) = await redis.xrange("audit:chain")
    assert orjson.loads(fields["body"])["actor"] == me.json()["actor"]


async def test_bad_jwts_are_refused_with_the_reason(
    redis: Redis, signing_key: RSAKey, verifier: JwtVerifier,
) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(orjson.dumps({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60,
        "roles": "admin"})).rstrip(b"=").decode()
    bad = {
        "expired": issued(signing_key, exp=int(time.time()) - 120),
        "foreign key": issued(stranger),
        "unsigned": f"{header}.{claims}.",
        "wrong issuer": issued(signing_key, iss="https://evil.example"),
        "wrong audience": issued(signing_key, aud="another-app"),
        "no role": issued(signing_key, roles=["auditor"]),
        "garbage": "a.b.c",
    }
    reasons = {}
    async with serving(redis, empty_fleet, options=ApiOptions(jwt=verifier)) as (api, _):
        for why, token in bad.items():
            answer = await api.call("GET", "/api/v1/whoami", token)
            assert answer.status_code == 401, why
            reasons[why] = answer.json()["error"]
    assert all(reason.startswith("JWT refused") for reason in reasons.values()), reasons
    assert "exp" in reasons["expired"]
    assert "iss" in reasons["wrong issuer"] and "aud" in reasons["wrong audience"]
    assert "claim 'roles' names no role" in reasons["no role"]


def test_a_bad_jwks_file_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "jwks.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="jwks.json: not a readable JWKS"):
        JwtVerifier.from_file(broken, issuer=ISSUER, audience=AUDIENCE)
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="empty.json: not a readable JWKS"):
        JwtVerifier.from_file(empty, issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ConfigError, match="FLEET_API_JWT_ISSUER"):
        JwtVerifier.from_file(empty, issuer=None, audience=AUDIENCE)


async def test_a_rotated_jwks_file_is_used_without_a_restart(
    redis: Redis, tmp_path: Path, signing_key: RSAKey,
) -> None:
    """The identity provider rotates its key: the JWKS file is replaced (a rename, as
    config management and Kubernetes secrets do); a broken file keeps the last keys."""
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(KeySet([signing_key]).as_dict(private=False)))
    verifier = JwtVerifier.from_file(jwks, issuer=ISSUER, audience=AUDIENCE, role_claim="roles")
    rotated = RSAKey.generate_key(2048, parameters={"kid": "idp-2"})
    async with serving(redis, empty_fleet, options=ApiOptions(jwt=verifier)) as (api, _):
        before = await api.call("GET", "/api/v1/whoami", issued(signing_key))
        early = await api.call("GET", "/api/v1/whoami", issued(rotated))

        staged = tmp_path / "jwks.json.new"
        staged.write_bytes(orjson.dumps(KeySet([rotated]).as_dict(private=False)))
        staged.replace(jwks)
        after = await api.call("GET", "/api/v1/whoami", issued(rotated))
        retired = await api.call("GET", "/api/v1/whoami", issued(signing_key))

        jwks.write_text('{"keys": [')  # half written: the rotated key stays in use
        while_broken = await api.call("GET", "/api/v1/whoami", issued(rotated))
        jwks.write_bytes(b" " * (2 * 1024 * 1024))  # not a key set: not read whole
        while_huge = await api.call("GET", "/api/v1/whoami", issued(rotated))
    assert before.status_code == 200
    assert early.status_code == 401  # not in the file yet
    assert after.status_code == 200 and after.json()["actor"]["id"] == "jwt:u-42"
    assert retired.status_code == 401
    assert while_broken.status_code == 200
    assert while_huge.status_code == 200
