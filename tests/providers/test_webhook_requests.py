"""What the http-webhook receiver refuses, and how (413, 415, 400, 422, 429), the
idempotency key, and two replicas serving at once under their own leases."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from framework.core import ConfigError
from tests.providers.webhook_harness import (
    post,
    running_webhook,
    stream_events,
    webhook_config,
)

KEYS = {"mode": "apiKey", "secrets": {"partner-a": "key-a-0123456789",
                                   "partner-b": "key-b-0123456789"}}
A = {"X-API-Key": "key-a-0123456789"}
B = {"X-API-Key": "key-b-0123456789"}
SCHEMA = {"type": "object", "required": ["sensor", "reading"],
          "properties": {"sensor": {"type": "string"}, "reading": {"type": "number"}}}


async def test_oversize_wrong_type_bad_json_and_schema_errors_are_refused_and_not_kept(
    redis: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "maxBodyBytes": 1000, "schema": SCHEMA,
                                      "event": {"nodeIdPath": "sensor", "valuePath": "reading",
                                                "unit": "C", "source": "lab"}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        big = await post(session, hook.url, b'{"sensor": "' + b"x" * 2000 + b'"}', A)

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 200

        async with session.post(hook.url, data=chunks(), headers={
                **A, "Content-Type": "application/json"}) as answer:
            streamed = answer.status
        form = await post(session, hook.url, b"a=1", {
            **A, "Content-Type": "application/x-www-form-urlencoded"})
        not_json = await post(session, hook.url, b"{not json", A)
        invalid = await post(session, hook.url, orjson.dumps({"sensor": 7}), A)
        good = await post(session, hook.url, orjson.dumps({"sensor": "t-1", "reading": 3}), A)

    assert (big[0], streamed) == (413, 413)
    assert big[2] == {"error": "the body is over 1000 bytes"}
    assert form[0] == 415 and "application/x-www-form-urlencoded" in form[2]["error"]
    assert not_json[0] == 400 and not_json[2]["error"].startswith("the body is not JSON")
    assert invalid[0] == 422
    assert invalid[2]["details"] == [
        {"path": "/", "message": "'reading' is a required property"},
        {"path": "/sensor", "message": "7 is not of type 'string'"},
    ]
    assert good[0] == 200
    [entry] = await stream_events(redis)
    assert {k: entry["payload"][k] for k in ("source", "nodeId", "value", "unit")} == {
        "source": "lab", "nodeId": "t-1", "value": 3, "unit": "C"}


async def test_a_pydantic_contract_reports_its_errors_in_the_422_body(redis: Redis) -> None:
    config = webhook_config("hooks", {"auth": KEYS,
                                      "contract": "tests.providers.webhook_contract:Reading"})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        invalid = await post(session, hook.url, orjson.dumps({"sensor": "s", "reading": "hot"}),
                             A)
        good = await post(session, hook.url, orjson.dumps({"sensor": "s", "reading": 1.5}), A)

    assert invalid[0] == 422
    assert invalid[2]["details"] == [
        {"path": "/reading", "message": "Input should be a valid number, unable to parse "
         "string as a number"}]
    assert good[0] == 200 and len(await stream_events(redis)) == 1


async def test_an_idempotency_key_makes_a_redelivery_a_no_op_per_client(redis: Redis) -> None:
    config = webhook_config("hooks", {"auth": KEYS})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        body = orjson.dumps({"order": 1})
        first = await post(session, hook.url, body, {**A, "Idempotency-Key": "order-1"})
        again = await post(session, hook.url, body, {**A, "Idempotency-Key": "order-1"})
        other_client = await post(session, hook.url, body, {**B, "Idempotency-Key": "order-1"})
        unkeyed = [await post(session, hook.url, body, A) for _ in range(2)]

    assert [first[0], again[0], other_client[0], *(u[0] for u in unkeyed)] == [200] * 5
    entries = await stream_events(redis)
    # One for partner-a's key, one for partner-b's, and both unkeyed requests.
    assert len(entries) == 4
    assert entries[0]["item_id"] == "partner-a:order-1"
    assert entries[1]["item_id"] == "partner-b:order-1"


async def test_two_replicas_serve_at_once_and_share_rate_limits_and_idempotency_keys(
    redis: Redis,
) -> None:
    provider: dict[str, Any] = {"auth": KEYS, "rateLimit": {"requests": 4, "windowS": 30}}
    first = webhook_config("hooks", provider)
    second = first.model_copy(update={"provider_config": {
        **first.provider_config, "port": webhook_config("x", {}).provider_config["port"]}})
    async with running_webhook(redis, first, replica="a") as one, running_webhook(
            redis, second, replica="b") as two, aiohttp.ClientSession() as session:
        assert await redis.get("lease:hooks:a") == one.worker.lease.token
        assert await redis.get("lease:hooks:b") == two.worker.lease.token
        body = orjson.dumps({"n": 1})
        keyed = {**A, "Idempotency-Key": "k-1"}
        answers = [await post(session, one.url, body, keyed),
                   await post(session, two.url, body, keyed),  # a redelivery elsewhere
                   await post(session, one.url, body, A),
                   await post(session, two.url, body, A),
                   await post(session, one.url, body, A),  # partner-a's 5th in the window
                   await post(session, two.url, body, B)]  # partner-b has its own count

    assert [a[0] for a in answers] == [200, 200, 200, 200, 429, 200]
    assert 1 <= int(answers[4][1]["Retry-After"]) <= 30
    assert answers[4][2] == {"error": "rate limit exceeded"}
    entries = await stream_events(redis)
    assert len(entries) == 4  # the redelivery of k-1 and the refused request are not there


async def test_a_replica_of_a_type_that_runs_one_instance_is_a_config_error(
    redis: Redis,
) -> None:
    from framework.polling import ConnectorConfig
    config = ConnectorConfig(name="noaa", type="NOAA_WEATHER")
    with pytest.raises(ConfigError, match="CONNECTOR_REPLICA is set, but type NOAA_WEATHER"):
        async with running_webhook(redis, config, replica="a"):
            pass


async def test_requests_waiting_together_are_saved_together(redis: Redis) -> None:
    config = webhook_config("hooks", {"auth": KEYS})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(
            post(session, hook.url, orjson.dumps({"n": n}), A) for n in range(50)))

    assert [a[0] for a in answers] == [200] * 50
    values = sorted(e["payload"]["value"]["n"] for e in await stream_events(redis))
    assert values == list(range(50))


@pytest.mark.slow
async def test_a_port_already_taken_is_retried_after_a_pause_not_in_a_loop(
    redis: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS})
    port = config.provider_config["port"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(TimeoutError):
            async with running_webhook(redis, config, listen_timeout_s=2.0):
                pass
    # One failed window when it first tried, then a pause: not hundreds in a loop.
    assert await redis.hget("metrics:connector:hooks", "failedPolls") == "1"


async def test_the_event_takes_its_time_and_node_from_the_body_or_refuses_it(
    redis: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "event": {
        "nodeIdPath": "device.id", "timestampPath": "at", "valuePath": "data.temp"}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        iso = await post(session, hook.url, orjson.dumps(
            {"device": {"id": "d-1"}, "at": "2026-12-03T10:00:00+00:00", "data": {"temp": 4}}), A)
        epoch = await post(session, hook.url, orjson.dumps(
            {"device": {"id": 7}, "at": 1796292000, "data": {"temp": 5}}), A)
        no_node = await post(session, hook.url, orjson.dumps({"at": 1, "data": {}}), A)
        bad_time = await post(session, hook.url, orjson.dumps(
            {"device": {"id": "d-1"}, "at": "yesterday"}), A)

    assert (iso[0], epoch[0]) == (200, 200)
    assert no_node == (422, no_node[1], {
        "error": "nodeIdPath 'device.id' found no string or number in the body"})
    assert bad_time[0] == 422 and bad_time[2]["error"].startswith("timestampPath 'at'")
    events = [e["payload"] for e in await stream_events(redis)]
    assert [(e["nodeId"], e["value"], e["timestamp"]) for e in events] == [
        ("d-1", 4, "2026-12-03T10:00:00+00:00"), ("7", 5, "2026-12-03T10:00:00+00:00")]


@pytest.mark.slow
async def test_a_slow_stream_answers_503_past_max_pending_and_saves_the_rest(
    redis: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "maxPending": 2})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        await redis.client_pause(3000, all=False)  # the fenced append waits
        first = [asyncio.create_task(post(session, hook.url, orjson.dumps({"n": n}), A))
                 for n in range(2)]
        await asyncio.sleep(0.3)
        started = asyncio.get_running_loop().time()
        refused = await post(session, hook.url, orjson.dumps({"n": 2}), A)
        refused_after_s = asyncio.get_running_loop().time() - started
        waited = await asyncio.gather(*first)

    assert refused[0] == 503 and refused[1]["Retry-After"] == "1"
    assert refused_after_s < 2.0  # at once, not after the pause (2.7 s more)
    assert [w[0] for w in waited] == [200, 200]
    assert sorted(e["payload"]["value"]["n"] for e in await stream_events(redis)) == [0, 1]


async def test_a_body_that_trickles_in_is_answered_503_at_the_deadline_not_held(
    redis: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "requestTimeoutMs": 500})
    async with running_webhook(redis, config):
        port = config.provider_config["port"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-API-Key: key-a-0123456789\r\nContent-Length: 100\r\n\r\n{\"n\": ")
        await writer.drain()  # ...and the other 94 bytes never come
        async with asyncio.timeout(10):
            status_line = await reader.readline()
        writer.close()

    assert status_line.startswith(b"HTTP/1.1 503")
    assert await stream_events(redis) == []


async def test_without_auth_the_client_is_the_peer_address_and_is_rate_limited(
    redis: Redis,
) -> None:
    config = webhook_config("open", {"auth": {"mode": "none"}, "method": "PUT",
                                     "path": "/in", "rateLimit": {"requests": 1, "windowS": 60}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        async with session.put(hook.base + "/in", data=b'{"a": 1}',
                               headers={"Content-Type": "application/json"}) as answer:
            first = answer.status
        async with session.put(hook.base + "/in", data=b'{"a": 2}',
                               headers={"Content-Type": "application/json"}) as answer:
            second, retry_after = answer.status, answer.headers.get("Retry-After")
        async with session.post(hook.base + "/in", data=b"{}") as answer:
            wrong_method = answer.status

    assert (first, second, wrong_method) == (200, 429, 405)
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    [entry] = await stream_events(redis)
    assert entry["payload"]["nodeId"] == "127.0.0.1"
    assert await redis.exists("connector:state:open:rate:127.0.0.1") == 1
