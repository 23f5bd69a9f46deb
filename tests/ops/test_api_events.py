"""``GET /api/v1/events`` over real HTTP against a real Redis: the fleet as
server-sent events, secrets redacted, Redis down said in the stream, the read-auth
setting honoured, and every stream ended at once when the server stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from framework.core import KnownSecrets, SystemClock, create_redis
from framework.testing import RedisServer
from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from tests.ops.test_api_connectors import SECRET, fleet_with_a_secret
from worker.ops import ApiOptions, OpsContext, OpsServer, Role, build_app


async def next_event(lines: Any) -> tuple[str, dict[str, Any]]:
    """The next ``event:`` / ``data:`` pair of a server-sent event stream."""
    kind = ""
    async with asyncio.timeout(15):
        async for line in lines:
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                return kind, orjson.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended")


async def test_the_stream_carries_the_fleet_with_secrets_redacted(
    redis: Redis, tmp_path: Path
) -> None:
    fleet = fleet_with_a_secret(tmp_path)
    known = KnownSecrets()
    known.remember(fleet.secrets)
    await redis.set("lease:noaa", f"holder-{SECRET}", px=10_000)
    async with (serving(redis, lambda: fleet, secrets=known) as (_, base),
                httpx.AsyncClient(timeout=10) as client,
                client.stream("GET", f"{base}/api/v1/events") as stream):
        assert stream.headers["content-type"] == "text/event-stream"
        lines = stream.aiter_lines()
        kind, first = await next_event(lines)
        await redis.hset("fleet:control:noaa", "paused", '{"by": "x"}')
        _, second = await next_event(lines)
    assert kind == "fleet"
    (connector,) = first["connectors"]
    assert connector["leaseHolder"] == "holder-***"
    assert connector["paused"] is None and second["connectors"][0]["paused"] == {"by": "x"}
    assert first["groups"] == []


async def test_the_stream_says_when_redis_is_down_and_needs_a_token_when_reads_do(
    tmp_path: Path,
) -> None:
    with RedisServer() as server:
        redis = create_redis(server.url)
        viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
        try:
            options = ApiOptions(read_auth=True)
            async with (serving(redis, empty_fleet, options=options) as (api, base),
                        httpx.AsyncClient(timeout=10) as client):
                refused = await api.call("GET", "/api/v1/events")
                async with client.stream("GET", f"{base}/api/v1/events",
                                         headers={"Authorization": f"Bearer {viewer}"}
                                         ) as stream:
                    lines = stream.aiter_lines()
                    assert (await next_event(lines))[0] == "fleet"
                    server.stop()
                    kind, body = await next_event(lines)
        finally:
            await redis.aclose()
    assert refused.status_code == 401
    assert kind == "unavailable" and body["dependency"] == "redis"


async def test_stopping_the_server_ends_its_streams_at_once(redis: Redis) -> None:
    ops = OpsContext(redis=redis, prometheus=None,  # type: ignore[arg-type]  # not read
                     fleet=empty_fleet, clock=SystemClock(),
                     process_health=lambda: (True, {}))
    server = OpsServer(build_app(ops), host="127.0.0.1", port=0)
    await server.start()
    async with (httpx.AsyncClient(timeout=10) as client,
                client.stream("GET", f"http://127.0.0.1:{server.port}/api/v1/events")
                as stream):
        await next_event(stream.aiter_lines())
        started = time.monotonic()
        await server.stop()
        took_s = time.monotonic() - started
    assert took_s < 5  # not aiohttp's 60 s wait for open requests
