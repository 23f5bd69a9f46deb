"""The devices routes of the control API, over real HTTP against a real Redis: list and
show (viewer), maintenance windows (operator, audited), and the errors they name."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from framework.core import SystemClock, create_redis
from framework.testing import RedisServer
from providers.devices import DeviceGroups, DeviceRegistry, Heartbeat
from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from worker.ops import Role


async def test_devices_are_listed_and_shown(redis: Redis) -> None:
    registry = DeviceRegistry(redis, clock=SystemClock())
    await registry.register("m-2", group="meters", tags=["site:n"])
    await registry.heartbeat(Heartbeat("m-1", timeout_s=60, group="meters"))
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, _):
        listed = await api.call("GET", "/api/v1/devices", tokens[Role.VIEWER],
                                params={"count": "1"})
        assert listed.status_code == 200
        assert [d["id"] for d in listed.json()["devices"]] == ["m-1"]
        assert listed.json()["next"] == "m-1" and listed.json()["total"] == 2
        online = await api.call("GET", "/api/v1/devices", params={"status": "online"})
        assert [d["id"] for d in online.json()["devices"]] == ["m-1"]
        shown = await api.call("GET", "/api/v1/devices/{id}", id="m-2")
        assert shown.json()["tags"] == ["site:n"] and shown.json()["status"] == "unknown"
        missing = await api.call("GET", "/api/v1/devices/{id}", id="nobody")
        assert missing.status_code == 404 and missing.json()["error"] == "no device 'nobody'"
        hostile = await api.call("GET", "/api/v1/devices/{id}", id="..%2F..%2Fetc")
        assert hostile.status_code in (400, 404)
        bad_count = await api.call("GET", "/api/v1/devices", params={"count": "0"})
        assert bad_count.status_code == 400
        assert bad_count.json()["error"] == "query: count: expected 1 to 1000, got '0'"
        bad_group = await api.call("GET", "/api/v1/devices", params={"group": "a b"})
        assert bad_group.json()["error"].startswith("query: group: expected 1 to 128")


async def test_maintenance_windows_need_an_operator_and_are_audited(redis: Redis) -> None:
    tokens = await tokens_for_every_role(redis)
    path = "/api/v1/device-groups/{name}/maintenance"
    async with serving(redis, empty_fleet) as (api, _):
        body = {"for": "2h", "reason": "substation works"}
        denied = await api.call("POST", path, tokens[Role.VIEWER], name="north",
                                json_body=body)
        assert denied.status_code == 403
        created = await api.call("POST", path, tokens[Role.OPERATOR], name="north",
                                 json_body=body)
        assert created.status_code == 201
        window = created.json()
        assert window["endMs"] - window["startMs"] == 7_200_000
        assert window["createdBy"].startswith("tok_")
        both = await api.call("POST", path, tokens[Role.OPERATOR], name="north",
                              json_body={**body, "end": "2030-01-01T00:00:00Z"})
        assert both.status_code == 400
        assert both.json()["error"].startswith("request body: give exactly one of end")
        listed = await api.call("GET", "/api/v1/device-groups")
        assert [w["id"] for w in listed.json()["windows"]] == [window["id"]]
        removed = await api.call("DELETE", path + "/{id}", tokens[Role.OPERATOR],
                                 name="north", id=window["id"])
        assert removed.status_code == 200 and removed.json()["removed"] is True
        again = await api.call("DELETE", path + "/{id}", tokens[Role.OPERATOR],
                               name="north", id=window["id"])
        assert again.status_code == 404
    assert await DeviceGroups(redis, clock=SystemClock()).windows() == []
    records = [json.loads(fields["body"]) for _, fields in await redis.xrange("audit:chain")]
    assert [(r["action"], r["target"], r["actor"]["role"]) for r in records] == [
        ("maintenance_window_add", "device-group:north", "operator"),
        ("maintenance_window_remove", "device-group:north", "operator")]


async def test_device_routes_answer_503_json_when_redis_is_down() -> None:
    with RedisServer() as server:
        redis = create_redis(server.url)
        tokens = await tokens_for_every_role(redis)
        try:
            async with serving(redis, empty_fleet) as (api, _):
                server.stop()
                for method, path, params in [
                        ("GET", "/api/v1/devices", {}),
                        ("GET", "/api/v1/devices/{id}", {"id": "m-1"}),
                        ("GET", "/api/v1/device-groups", {}),
                        ("POST", "/api/v1/device-groups/{name}/maintenance", {"name": "n"})]:
                    answer = await asyncio.wait_for(api.call(
                        method, path, tokens[Role.OPERATOR],
                        json_body={"for": "1h", "reason": "r"}, **params), 15)
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.json()["dependency"] == "redis"
                    assert "Traceback" not in answer.text
        finally:
            await redis.aclose()
