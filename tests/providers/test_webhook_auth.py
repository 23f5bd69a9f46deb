"""The http-webhook receiver on real Redis, called by a real aiohttp client over
127.0.0.1: each auth mode good and bad, replayed signatures, key rotation by file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from tests.providers.webhook_harness import (
    github_signature,
    post,
    running_webhook,
    stream_events,
    timestamped_headers,
    webhook_config,
)

BODY = orjson.dumps({"sensor": "s-1", "reading": 21.5})


async def test_an_api_key_names_its_client_and_a_wrong_or_missing_one_is_401(
    redis: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": {"mode": "apiKey", "secrets": {
        "partner-a": "key-a-0123456789", "partner-b": "key-b-0123456789"}}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        good = await post(session, hook.url, BODY, {"X-API-Key": "key-b-0123456789"})
        wrong = await post(session, hook.url, BODY, {"X-API-Key": "key-c-0123456789"})
        missing = await post(session, hook.url, BODY)

    assert good[0] == 200 and good[2]["status"] == "saved"
    assert (wrong[0], wrong[2]) == (401, {"error": "X-API-Key: not a valid key"})
    assert (missing[0], missing[2]) == (401, {"error": "X-API-Key: missing"})
    [entry] = await stream_events(redis)
    assert entry["connector"] == "hooks" and entry["type"] == "http-webhook"
    assert entry["item_id"] == good[2]["itemId"]
    event = entry["payload"]
    assert (event["source"], event["nodeId"], event["value"]) == (
        "webhook", "partner-b", {"sensor": "s-1", "reading": 21.5})
    assert event["metadata"]["client"] == "partner-b"


async def test_a_bearer_token_is_checked(redis: Redis) -> None:
    config = webhook_config("hooks", {"auth": {"mode": "bearer", "secrets": {
        "ci": "token-0123456789"}}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        good = await post(session, hook.url, BODY, {"Authorization": "Bearer token-0123456789"})
        wrong = await post(session, hook.url, BODY, {"Authorization": "Bearer token-x"})
        basic = await post(session, hook.url, BODY, {"Authorization": "Basic dXNlcjpwYXNz"})

    assert good[0] == 200
    assert (wrong[0], basic[0]) == (401, 401)
    assert basic[2] == {"error": "Authorization: expected 'Bearer <token>'"}
    assert len(await stream_events(redis)) == 1


async def test_a_github_signature_is_checked_and_a_replay_is_a_no_op(redis: Redis) -> None:
    secret = "github-secret-0123"
    config = webhook_config("gh", {"auth": {"mode": "githubHmac", "secrets": {"github": secret}},
                                   "deliveryIdHeader": "X-GitHub-Delivery"})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        signed = {"X-Hub-Signature-256": github_signature(secret, BODY),
                  "X-GitHub-Delivery": "d-1"}
        first = await post(session, hook.url, BODY, signed)
        # A captured request sent again, even under another delivery id.
        replayed = await post(session, hook.url, BODY, {**signed, "X-GitHub-Delivery": "d-2"})
        other_secret = await post(session, hook.url, BODY, {
            "X-Hub-Signature-256": github_signature("not-the-secret", BODY)})
        tampered = await post(session, hook.url, BODY + b" ", signed)
        unsigned = await post(session, hook.url, BODY)

    assert (first[0], replayed[0]) == (200, 200)
    assert (other_secret[0], tampered[0], unsigned[0]) == (401, 401, 401)
    assert unsigned[2] == {"error": "X-Hub-Signature-256: expected 'sha256=<hex>'"}
    [entry] = await stream_events(redis)
    assert entry["payload"]["metadata"]["deliveryId"] == "d-1"


async def test_a_timestamped_signature_outside_the_replay_window_is_refused(
    redis: Redis,
) -> None:
    secret = "shared-secret-0123"
    config = webhook_config("signed", {"auth": {"mode": "hmac", "secrets": {"sender": secret},
                                                "replayWindowS": 60}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        fresh = timestamped_headers(secret, BODY)
        first = await post(session, hook.url, BODY, fresh)
        replayed = await post(session, hook.url, BODY, fresh)
        stale = await post(session, hook.url, BODY,
                           timestamped_headers(secret, BODY, at=time.time() - 120))
        future = await post(session, hook.url, BODY,
                            timestamped_headers(secret, BODY, at=time.time() + 120))
        wrong = await post(session, hook.url, BODY, timestamped_headers("other-secret", BODY))
        # The timestamp is signed: moving it breaks the signature.
        moved = await post(session, hook.url, BODY, {
            **fresh, "X-Signature-Timestamp": str(int(fresh["X-Signature-Timestamp"]) + 1)})

    assert (first[0], replayed[0]) == (200, 200)
    assert stale == (401, stale[1], {
        "error": "X-Signature-Timestamp: outside the replay window of 60 s"})
    assert (future[0], wrong[0], moved[0]) == (401, 401, 401)
    assert len(await stream_events(redis)) == 1  # the replay added nothing


@pytest.mark.slow
async def test_keys_in_a_file_rotate_without_a_restart(redis: Redis, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated by the secret store\npartner:old-key-0123\n")
    config = webhook_config("hooks", {"auth": {"mode": "apiKey", "secretsFile": str(keys)}})
    async with running_webhook(redis, config) as hook, aiohttp.ClientSession() as session:
        before = await post(session, hook.url, BODY, {"X-API-Key": "old-key-0123"})
        keys.write_text("partner:new-key-4567\n")
        # Checked at most once a second.
        await asyncio.sleep(1.2)
        new = await post(session, hook.url, BODY, {"X-API-Key": "new-key-4567"})
        old = await post(session, hook.url, BODY, {"X-API-Key": "old-key-0123"})
        keys.write_text("partner-without-a-key\n")  # a broken file keeps the keys last read
        await asyncio.sleep(1.2)
        kept = await post(session, hook.url, BODY, {"X-API-Key": "new-key-4567"})

    assert (before[0], new[0], old[0], kept[0]) == (200, 200, 401, 200)
    assert [e["payload"]["nodeId"] for e in await stream_events(redis)] == ["partner"] * 3
