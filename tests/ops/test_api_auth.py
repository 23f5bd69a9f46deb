"""Control API authentication and roles, over real HTTP against a real Redis: no
mutating call without a token, role boundaries, bad and revoked tokens, failed-login
rate limiting, cross-origin refusal, the read-auth setting, open health routes, and
every route in the OpenAPI document."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import SecretStr
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.polling import load_fleet_config
from tests.ops.api_client import DOCUMENT, empty_fleet, serving, tokens_for_every_role
from tests.process import noaa_entry, write_config
from worker.ops import ApiOptions, OpsContext, Role, TokenStore, build_app

SAFE = {"GET", "HEAD", "OPTIONS"}


def app_routes() -> set[tuple[str, str]]:
    ops = OpsContext(redis=Redis(), prometheus=None,  # type: ignore[arg-type]  # never called
                     fleet=empty_fleet, clock=SystemClock(), process_health=lambda: (True, {}))
    app = build_app(ops)
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"}


def test_every_api_route_is_in_the_openapi_document_and_every_documented_one_exists() -> None:
    served = {(method, path) for method, path in app_routes() if path.startswith("/api/")}
    documented = {(method.upper(), path) for path, item in DOCUMENT["paths"].items()
                  for method in item}
    assert served == documented
    assert len(served) >= 25


async def test_no_mutating_route_answers_without_a_token(redis: Redis) -> None:
    mutating = sorted((m, p) for m, p in app_routes() if m not in SAFE)
    assert len(mutating) >= 12
    async with serving(redis, empty_fleet) as (api, _):
        for method, path in mutating:
            concrete = path.replace("{name}", "x").replace("{stream}", "s").replace(
                "{id}", "1-0")
            answer = await api.client.request(method, concrete, json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"].startswith("a bearer token is required")
    assert await redis.xlen("audit:chain") == 0  # nothing was done


async def test_each_role_reaches_only_its_routes(redis: Redis, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry("noaa", "http://127.0.0.1:9"))
    fleet = load_fleet_config(config)
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, lambda: fleet) as (api, _):
        pause = "/api/v1/connectors/{name}/pause"
        denied = await api.call("POST", pause, tokens[Role.VIEWER], name="noaa",
                                json_body={"reason": "x"})
        assert denied.status_code == 403
        assert denied.json()["required"] == "operator"
        assert await redis.hget("fleet:control:noaa", "paused") is None
        allowed = await api.call("POST", pause, tokens[Role.OPERATOR], name="noaa",
                                 json_body={"reason": "maintenance"})
        assert allowed.status_code == 200
        purge = "/api/v1/streams/{stream}/dead-letters"
        assert (await api.call("DELETE", purge, tokens[Role.OPERATOR],
                               stream="s")).status_code == 403
        assert (await api.call("DELETE", purge, tokens[Role.ADMIN],
                               stream="s")).status_code == 200
        assert (await api.call("GET", "/api/v1/tokens", tokens[Role.OPERATOR])
                ).status_code == 403
        listed = await api.call("GET", "/api/v1/tokens", tokens[Role.ADMIN])
        assert {t["role"] for t in listed.json()["tokens"]} == {"viewer", "operator", "admin"}
        assert all("token" not in t for t in listed.json()["tokens"])


async def test_bad_and_revoked_tokens_are_refused_with_401(redis: Redis) -> None:
    store = TokenStore(redis, clock=SystemClock())
    token, info = await store.create(name="ci", role=Role.ADMIN, created_by="test")
    async with serving(redis, empty_fleet) as (api, _):
        whoami = await api.call("GET", "/api/v1/whoami", token)
        assert whoami.json()["actor"] == {"id": info.id, "name": "ci", "role": "admin"}
        for bad in ("cft_" + "A" * 43, "not-a-token", token + "x", "cft_"):
            answer = await api.call("GET", "/api/v1/whoami", bad)
            assert answer.status_code == 401, bad
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        basic = await api.call("GET", "/api/v1/whoami", headers={"Authorization": "Basic eDp5"})
        assert basic.status_code == 401
        await store.revoke(info.id)
        assert (await api.call("GET", "/api/v1/whoami", token)).status_code == 401
    assert await redis.hlen("fleet:api:tokens") == 0


async def test_repeated_failed_logins_from_one_address_get_429(redis: Redis) -> None:
    token, _ = await TokenStore(redis, clock=SystemClock()).create(
        name="ok", role=Role.VIEWER, created_by="test")
    options = ApiOptions(max_auth_failures=3, auth_failure_window_s=30)
    async with serving(redis, empty_fleet, options=options) as (api, _):
        for _attempt in range(3):
            assert (await api.call("GET", "/api/v1/whoami", "cft_wrong")).status_code == 401
        limited = await api.call("GET", "/api/v1/whoami", "cft_wrong")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 30
        # Even a good token waits: the address is guessing.
        assert (await api.call("GET", "/api/v1/whoami", token)).status_code == 429
        await redis.delete("fleet:api:auth-failures:127.0.0.1")
        assert (await api.call("GET", "/api/v1/whoami", token)).status_code == 200


async def test_a_cross_origin_mutating_request_is_refused(redis: Redis) -> None:
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, base):
        inject = "/api/v1/streams/{stream}/events"
        event = {"event": {"type": "t", "source": "s", "payload": {}}}
        foreign = await api.call("POST", inject, tokens[Role.ADMIN], stream="s",
                                 json_body=event, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert "cross-origin" in foreign.json()["error"]
        assert await redis.exists("s") == 0
        same = await api.call("POST", inject, tokens[Role.ADMIN], stream="s", json_body=event,
                              headers={"Origin": base})
        assert same.status_code == 201


async def test_reads_are_open_by_default_and_closed_by_the_setting(redis: Redis) -> None:
    async with serving(redis, empty_fleet) as (api, _):
        assert (await api.call("GET", "/api/v1/connectors")).status_code == 200
    async with serving(redis, empty_fleet, options=ApiOptions(read_auth=True)) as (api, _):
        assert (await api.call("GET", "/api/v1/connectors")).status_code == 401
        viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
        assert (await api.call("GET", "/api/v1/connectors", viewer)).status_code == 200
        # Prometheus and the kubelet need no token, whatever the setting.
        for path in ("/metrics", "/healthz", "/readyz", "/health"):
            assert (await api.client.get(path)).status_code == 200, path


async def test_unknown_routes_and_methods_answer_json(redis: Redis) -> None:
    async with serving(redis, empty_fleet) as (api, _):
        missing = await api.client.get("/api/v1/nothing")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not Found"}
        wrong = await api.client.put("/api/v1/connectors")
        assert wrong.status_code == 405
        assert "error" in wrong.json()


async def test_an_oversized_body_is_refused_before_it_is_parsed(redis: Redis) -> None:
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, _):
        huge = {"event": {"type": "t", "source": "s", "payload": {"x": "y" * 1_100_000}}}
        answer = await api.call("POST", "/api/v1/streams/{stream}/events",
                                tokens[Role.OPERATOR], stream="s", json_body=huge)
        assert answer.status_code == 413
        assert await redis.exists("s") == 0



async def test_the_deployments_admin_token_is_stored_at_start(redis: Redis) -> None:
    token = "cft_" + "k" * 40
    options = ApiOptions(admin_token=SecretStr(token))
    async with serving(redis, empty_fleet, options=options) as (api, _):
        me = await api.call("GET", "/api/v1/whoami", token)
    async with serving(redis, empty_fleet, options=options):
        pass  # a restart keeps the one record
    assert me.json()["actor"]["role"] == "admin"
    assert me.json()["actor"]["name"] == "deployment"
    assert await redis.hlen("fleet:api:tokens") == 1
    assert token not in str(await redis.hgetall("fleet:api:tokens"))


async def test_a_malformed_admin_token_is_not_stored(redis: Redis) -> None:
    options = ApiOptions(admin_token=SecretStr("short"))
    async with serving(redis, empty_fleet, options=options) as (api, _):
        assert (await api.call("GET", "/api/v1/whoami", "short")).status_code == 401
    assert await redis.exists("fleet:api:tokens") == 0


async def test_a_damaged_token_record_grants_nothing_and_breaks_nothing(redis: Redis) -> None:
    token = "cft_" + "d" * 40
    await redis.hset("fleet:api:tokens", hashlib.sha256(token.encode()).hexdigest(),
                     '{"id": "tok_x", "role": "superuser"}')
    admin = (await tokens_for_every_role(redis))[Role.ADMIN]
    async with serving(redis, empty_fleet) as (api, _):
        refused = await api.call("GET", "/api/v1/whoami", token)
        listed = await api.call("GET", "/api/v1/tokens", admin)
    assert refused.status_code == 401
    assert len(listed.json()["tokens"]) == 3  # the three good ones
