"""The http-webhook WebSocket endpoint: one message is one event, acknowledged after
its commit; a bad message is answered and never stops the others; a slow stream
slows the producer (the server stops reading) instead of buffering without bound."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from providers.webhook import WebhookConnector
from tests.providers.webhook_harness import running_webhook, stream_events, webhook_config

KEYS = {"mode": "apiKey", "secrets": {"plant": "plant-key-0123"}}
SCHEMA = {"type": "object", "required": ["v"], "properties": {"v": {"type": "number"}}}


def ws_config(**extra: Any) -> Any:
    return webhook_config("live", {"auth": KEYS, "websocketPath": "/stream", "schema": SCHEMA,
                                   "event": {"valuePath": "v"}, **extra})


async def answers(socket: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        return [orjson.loads((await socket.receive()).data) for _ in range(count)]


async def test_each_message_is_acknowledged_after_its_commit_and_a_bad_one_is_answered(
    redis: Redis,
) -> None:
    async with running_webhook(redis, ws_config()) as hook, aiohttp.ClientSession() as session, \
            session.ws_connect(hook.base + "/stream",
                               headers={"X-API-Key": "plant-key-0123"}) as socket:
        for body in (b'{"v": 1}', b'{"v": "one"}', b"{", b'{"v": 3}'):
            await socket.send_bytes(body)
        replies = sorted(await answers(socket, 4), key=lambda r: r["seq"])
        entries = await stream_events(redis)

    assert [r["seq"] for r in replies] == [1, 2, 3, 4]
    assert "ack" in replies[0] and "ack" in replies[3]
    assert replies[1]["error"] == "the body does not match the endpoint's contract"
    assert replies[1]["details"] == [{"path": "/v", "message": "'one' is not of type 'number'"}]
    assert replies[1]["retry"] is False
    assert replies[2]["error"].startswith("the body is not JSON")
    assert [e["payload"]["value"] for e in entries] == [1, 3]
    assert [e["item_id"] for e in entries] == [replies[0]["ack"], replies[3]["ack"]]


async def test_an_upgrade_without_a_valid_key_is_refused(redis: Redis) -> None:
    upgrade = {"X-API-Key": "wrong", "Connection": "Upgrade", "Upgrade": "websocket",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with running_webhook(redis, ws_config()) as hook, aiohttp.ClientSession() as session, \
            session.get(hook.base + "/stream", headers=upgrade) as answer:
        assert answer.status == 401


@pytest.mark.slow
async def test_a_slow_stream_stops_the_reading_until_commits_free_a_slot(redis: Redis) -> None:
    async with running_webhook(redis, ws_config(websocketMaxInFlight=4)) as hook, \
            aiohttp.ClientSession() as session:
        connector = hook.worker._setup.connector
        assert isinstance(connector, WebhookConnector)
        async with session.ws_connect(hook.base + "/stream",
                                      headers={"X-API-Key": "plant-key-0123"}) as socket:
            # Writes (and so the fenced append) wait while Redis is paused.
            await redis.client_pause(3000, all=False)
            for value in range(20):
                await socket.send_bytes(orjson.dumps({"v": value}))
            async with asyncio.timeout(2):  # it reads up to the limit...
                for _ in range(100):
                    if connector.receiver.pending >= 4:
                        break
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # ...and no further while nothing is committed
            waiting_while_paused = connector.receiver.pending
            acked_while_paused = await _pending_answers(socket)
            replies = await answers(socket, 20)

    assert waiting_while_paused == 4  # read no further than the in-flight limit
    assert acked_while_paused == 0
    assert sorted(r["seq"] for r in replies) == list(range(1, 21))
    assert all("ack" in r for r in replies)
    assert [e["payload"]["value"] for e in await stream_events(redis)] == list(range(20))


async def _pending_answers(socket: aiohttp.ClientWebSocketResponse) -> int:
    """How many answers arrived already (none may, while nothing can be committed)."""
    try:
        async with asyncio.timeout(0.05):
            await socket.receive()
            return 1
    except TimeoutError:
        return 0


async def test_a_message_resent_after_a_reconnect_is_a_no_op_with_an_id_in_the_body(
    redis: Redis,
) -> None:
    config = ws_config(idempotencyPath="id")
    headers = {"X-API-Key": "plant-key-0123"}
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        async with session.ws_connect(hook.base + "/stream", headers=headers) as socket:
            await socket.send_bytes(b'{"id": "m-1", "v": 1}')
            first = await answers(socket, 1)
        # The producer did not see its ack (say): it reconnects and sends both again.
        async with session.ws_connect(hook.base + "/stream", headers=headers) as socket:
            await socket.send_bytes(b'{"id": "m-1", "v": 1}')
            await socket.send_bytes(b'{"id": "m-2", "v": 2}')
            again = sorted(await answers(socket, 2), key=lambda r: r["seq"])

    assert [r.get("ack") for r in first + again] == ["plant:m-1", "plant:m-1", "plant:m-2"]
    assert [e["payload"]["value"] for e in await stream_events(redis)] == [1, 2]
