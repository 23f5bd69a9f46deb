"""``/api/v1/connectors`` over real HTTP against a real Redis: list and show (secrets
redacted, lag, last error), pause and resume (the durable flag, audited with who),
restart and poll now (announced on the control channel), release the lease
(compare-and-delete), unknown connectors, and Redis down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.core import KnownSecrets, create_redis
from framework.polling import load_fleet_config
from framework.testing import RedisServer
from tests.ops.api_client import serving, tokens_for_every_role
from tests.process import noaa_entry, write_config
from worker.ops import Role

SECRET = "s3cr3t-api-key-value"


def fleet_with_a_secret(tmp_path: Path) -> Any:
    entry = noaa_entry("noaa", "http://127.0.0.1:9")
    entry["providerConfig"]["area"] = "${AREA_CODE}"
    config = write_config(tmp_path / "c.json", entry)
    return load_fleet_config(config, environ={"AREA_CODE": SECRET})


async def test_list_and_show_a_connector_with_its_secrets_redacted(
    redis: Redis, tmp_path: Path
) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    known = KnownSecrets()
    known.remember(fleet.secrets)
    await redis.hset("metrics:connector:noaa", mapping={
        "connectorName": "noaa", "lastSuccessTime": "2026-01-01T00:00:00.000Z",
        "totalPolls": "3"})
    await redis.set("lease:noaa", "host:1:abc", px=5000)
    async with serving(redis, lambda: fleet, secrets=known) as (api, _):
        listed = await api.call("GET", "/api/v1/connectors")
        shown = await api.call("GET", "/api/v1/connectors/{name}", name="noaa")
        missing = await api.call("GET", "/api/v1/connectors/{name}", name="nope")
    assert [c["name"] for c in listed.json()["connectors"]] == ["noaa"]
    body = shown.json()
    assert body["leaseHolder"] == "host:1:abc"
    assert body["totalPolls"] == 3
    assert body["lagMs"] > 0
    assert body["config"]["providerConfig"]["area"] == "***"
    assert SECRET not in shown.text and SECRET not in listed.text
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown connector 'nope'"


async def test_pause_and_resume_set_a_durable_flag_and_are_audited(
    redis: Redis, tmp_path: Path
) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, lambda: fleet) as (api, _):
        paused = await api.call("POST", "/api/v1/connectors/{name}/pause",
                                tokens[Role.OPERATOR], name="noaa",
                                json_body={"reason": "vendor maintenance"})
        shown = (await api.call("GET", "/api/v1/connectors/{name}", name="noaa")).json()
        health = await api.client.get("/health/connectors")
        resumed = await api.call("POST", "/api/v1/connectors/{name}/resume",
                                 tokens[Role.OPERATOR], name="noaa")
        again = await api.call("POST", "/api/v1/connectors/{name}/resume",
                               tokens[Role.OPERATOR], name="noaa")
    assert paused.status_code == 200
    assert shown["paused"]["reason"] == "vendor maintenance"
    assert shown["paused"]["by"] == "operator-tester"
    # Paused on purpose is not a failure: not "no successful poll yet".
    assert shown["healthy"] is True
    assert health.json()["connectors"]["noaa"] == {"healthy": True, "reason": None}
    assert resumed.json()["wasPaused"] is True
    assert again.json()["wasPaused"] is False
    assert await redis.hget("fleet:control:noaa", "paused") is None
    records = [orjson.loads(fields["body"]) for _, fields in
               await redis.xrange("audit:chain")]
    assert [(r["kind"], r["action"], r["target"], r["actor"]["role"]) for r in records] == [
        ("operator_action", "pause", "noaa", "operator"),
        ("operator_action", "resume", "noaa", "operator"),
        ("operator_action", "resume", "noaa", "operator")]
    assert records[0]["details"] == {"reason": "vendor maintenance"}


async def test_a_pause_reason_must_be_text(redis: Redis, tmp_path: Path) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, lambda: fleet) as (api, _):
        answer = await api.call("POST", "/api/v1/connectors/{name}/pause",
                                tokens[Role.OPERATOR], name="noaa", json_body={"reason": 5})
        not_json = await api.client.post("/api/v1/connectors/noaa/pause", content=b"{oops",
                                         headers={"Authorization":
                                                  f"Bearer {tokens[Role.OPERATOR]}"})
    assert answer.status_code == 400
    assert "reason" in answer.json()["error"]
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith("request body: invalid JSON")
    assert await redis.exists("fleet:control:noaa") == 0


async def test_restart_and_poll_now_are_announced_to_the_workers(
    redis: Redis, tmp_path: Path
) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    tokens = await tokens_for_every_role(redis)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("fleet:control")
    try:
        async with serving(redis, lambda: fleet) as (api, _):
            for path in ("/api/v1/connectors/{name}/restart", "/api/v1/connectors/{name}/poll"):
                answer = await api.call("POST", path, tokens[Role.OPERATOR], name="noaa")
                assert answer.status_code == 202
                assert answer.json()["listeners"] == 1
        heard = []
        async with asyncio.timeout(10):
            while len(heard) < 2:
                # None also for the subscription's own confirmation: read on.
                message = await pubsub.get_message(timeout=1)
                if message is not None:
                    heard.append(orjson.loads(message["data"]))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert heard == [{"connector": "noaa", "action": "restart"},
                     {"connector": "noaa", "action": "poll_now"}]


async def test_release_lease_deletes_only_the_holder_it_saw(redis: Redis, tmp_path: Path) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, lambda: fleet) as (api, _):
        path = "/api/v1/connectors/{name}/release-lease"
        nobody = await api.call("POST", path, tokens[Role.OPERATOR], name="noaa")
        await redis.set("lease:noaa", "host:7:old", px=10_000)
        released = await api.call("POST", path, tokens[Role.OPERATOR], name="noaa")
    assert nobody.status_code == 409
    assert "no instance holds its lease" in nobody.json()["error"]
    assert released.json()["released"] is True
    assert released.json()["previousHolder"] == "host:7:old"
    assert await redis.exists("lease:noaa") == 0


async def test_every_api_route_answers_503_json_when_redis_is_down(tmp_path: Path) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    with RedisServer() as server:
        redis = create_redis(server.url)
        tokens = await tokens_for_every_role(redis)
        try:
            async with serving(redis, lambda: fleet) as (api, _):
                server.stop()
                calls = [("GET", "/api/v1/connectors", {}),
                         ("GET", "/api/v1/connectors/{name}", {"name": "noaa"}),
                         ("POST", "/api/v1/connectors/{name}/pause", {"name": "noaa"}),
                         ("GET", "/api/v1/groups", {}),
                         ("GET", "/api/v1/audit/verify", {})]
                for method, path, params in calls:
                    answer = await asyncio.wait_for(
                        api.call(method, path, tokens[Role.ADMIN], **params), 15)
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.json()["dependency"] == "redis"
                    assert "Traceback" not in answer.text
        finally:
            await redis.aclose()
