"""Step records live only as long as they can matter (issue 15) and are keyed by the
event's identity (issue 14): real consumer, real Redis, a real HTTP target on 127.0.0.1.

Hostile peers: a target that refuses a step (the entry is dead-lettered, replayed days
later), a publisher that republishes an event after a failover rollback, a consumer that
finishes an entry another consumer has meanwhile dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallPolicy
from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.dead_letters import DeadLetterStream, Failure
from framework.consuming.delivery import AckWrite
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.keys import DEFAULT_STEP_RECORD_TTL_S, STEPS_PREFIX, steps_key
from framework.core.logs import get_logger
from providers.builtin import register_builtin_capabilities
from providers.http import HttpActions
from tests.execution_deps import execution_deps
from tests.rules_target import HttpTarget, TargetReply

STREAM = "items"
IDENTITY_TTL_S = 600


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def consume_until(
    redis: Redis, handler: RulesHandler, done: Callable[[], Awaitable[bool]]
) -> None:
    options = ConsumerOptions(
        streams=(STREAM,),
        group="rules",
        consumer="c1",
        start_id="0",
        block_ms=50,
        claim_idle_ms=200,
        max_deliveries=5,
    )
    consumer = Consumer(
        redis, handler, options, clock=SystemClock(), logger=get_logger(test="retention-steps")
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(done)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


def two_steps(url: str) -> dict[str, Any]:
    def post(step_id: str, path: str) -> dict[str, Any]:
        return {
            "id": step_id,
            "call": "http_call",
            "allowHosts": ["127.0.0.1"],
            "params": {"method": "POST", "url": url + path, "json": {}},
        }

    return {
        "version": 1,
        "rules": [
            {
                "name": "r",
                "match": {"stream": STREAM},
                "steps": [post("open", "/open"), post("attach", "/attach")],
            }
        ],
    }


def reading(value: float) -> dict[str, str]:
    document = {"type": "reading", "source": "sensor", "payload": {"value": value}}
    return {"event": orjson.dumps(document).decode()}


def item(item_id: str, version: str) -> dict[str, str]:
    """A connector's entry, as framework.polling's commit.lua writes it."""
    return {
        "connector": "noaa",
        "type": "alert",
        "item_id": item_id,
        "version": version,
        "payload": orjson.dumps({"id": item_id}).decode(),
    }


async def step_keys(redis: Redis) -> list[str]:
    return sorted([key async for key in redis.scan_iter(match=f"{STEPS_PREFIX}*")])


async def pending(redis: Redis) -> int:
    return int((await redis.xpending(STREAM, "rules"))["pending"])


class Rig:
    def __init__(self, redis: Redis, target: HttpTarget) -> None:
        registry = CapabilityRegistry()
        self.actions = register_builtin_capabilities(
            registry, http=HttpActions(policy=CallPolicy(max_retries=0))
        )
        self.handler = RulesHandler(
            parse_rules(two_steps(target.url)),
            RegistryExecutor(registry, execution_deps(redis, SystemClock())),
            redis=redis,
            identity_ttl_s=IDENTITY_TTL_S,
        )


async def test_the_records_of_an_acknowledged_entry_are_deleted_with_the_xack(
    redis: Redis,
) -> None:
    async with HttpTarget() as target:
        target.reply("/open", TargetReply(200, {"n": 1}))
        # The second step fails once: the records must survive the redelivery.
        target.reply("/attach", TargetReply(503), TargetReply(200))
        rig = Rig(redis, target)
        try:
            for value in range(5):
                await redis.xadd(STREAM, reading(float(value)))

            async def settled() -> bool:
                return len(target.received_at("/attach")) == 6 and await pending(redis) == 0

            await consume_until(redis, rig.handler, settled)
        finally:
            await rig.actions.aclose()
    assert len(target.received_at("/open")) == 5  # the retried entry did not repeat it
    assert await step_keys(redis) == []


async def test_a_dead_lettered_entry_keeps_its_records_for_the_replay_and_loses_them_after(
    redis: Redis,
) -> None:
    dead_letters = DeadLetterStream(redis, STREAM)
    async with HttpTarget() as target:
        target.reply("/open", TargetReply(201, {"ticket": "T-1"}))
        target.reply("/attach", TargetReply(400), TargetReply(200))  # refused, then fixed
        rig = Rig(redis, target)
        try:
            original = await redis.xadd(STREAM, reading(9.0))

            async def dead_lettered() -> bool:
                return await dead_letters.count() == 1

            await consume_until(redis, rig.handler, dead_lettered)
            # Other entries come and go meanwhile: their records do not linger.
            await redis.xadd(STREAM, reading(1.0))

            async def other_done() -> bool:
                return len(target.received_at("/attach")) == 2 and await pending(redis) == 0

            await consume_until(redis, rig.handler, other_done)
            kept = steps_key(STREAM, original)
            assert await step_keys(redis) == [kept]
            assert await redis.ttl(kept) > IDENTITY_TTL_S  # the long, replay lifetime
            [letter] = await dead_letters.read()
            assert await dead_letters.replay(letter.id) is not None

            async def replayed() -> bool:
                return len(target.received_at("/attach")) == 3 and await pending(redis) == 0

            await consume_until(redis, rig.handler, replayed)
        finally:
            await rig.actions.aclose()
    assert len(target.received_at("/open")) == 2  # the original's and the other entry's
    assert await step_keys(redis) == []


async def test_a_republished_event_runs_no_step_again_within_the_identity_lifetime(
    redis: Redis,
) -> None:
    async with HttpTarget() as target:
        target.reply("/open", TargetReply(200))
        target.reply("/attach", TargetReply(200))
        rig = Rig(redis, target)
        try:

            async def settled() -> bool:
                info = await redis.xinfo_groups(STREAM)
                return bool(info) and info[0]["lag"] == 0 and await pending(redis) == 0

            await redis.xadd(STREAM, item("alert-1", "v1"))
            await consume_until(redis, rig.handler, settled)
            # The failover rolled the connector's state back: it publishes the same
            # version again (a new entry id), then the next version.
            await redis.xadd(STREAM, item("alert-1", "v1"))
            await redis.xadd(STREAM, item("alert-1", "v2"))
            await consume_until(redis, rig.handler, settled)
        finally:
            await rig.actions.aclose()
    keys = [r.headers["Idempotency-Key"] for r in target.received_at("/open")]
    assert keys == [
        f"{STREAM}:item:noaa:alert-1:v1:r:open",
        f"{STREAM}:item:noaa:alert-1:v2:r:open",
    ]
    assert len(target.received_at("/attach")) == 2
    identities = await step_keys(redis)
    assert identities == [
        steps_key(STREAM, "item:noaa:alert-1:v1"),
        steps_key(STREAM, "item:noaa:alert-1:v2"),
    ]
    for key in identities:
        assert 0 < await redis.ttl(key) <= IDENTITY_TTL_S


async def test_a_dead_lettered_identity_event_replays_without_repeating_its_steps(
    redis: Redis,
) -> None:
    dead_letters = DeadLetterStream(redis, STREAM)
    async with HttpTarget() as target:
        target.reply("/open", TargetReply(201))
        target.reply("/attach", TargetReply(400), TargetReply(200))
        rig = Rig(redis, target)
        try:
            await redis.xadd(STREAM, item("alert-7", "v3"))

            async def dead_lettered() -> bool:
                return await dead_letters.count() == 1

            await consume_until(redis, rig.handler, dead_lettered)
            key = steps_key(STREAM, "item:noaa:alert-7:v3")
            assert await redis.ttl(key) > IDENTITY_TTL_S
            [letter] = await dead_letters.read()
            await dead_letters.replay(letter.id)

            async def attached() -> bool:
                return len(target.received_at("/attach")) == 2 and await pending(redis) == 0

            await consume_until(redis, rig.handler, attached)
        finally:
            await rig.actions.aclose()
    assert len(target.received_at("/open")) == 1
    # Acknowledged: the identity record now has the short lifetime.
    assert 0 < await redis.ttl(key) <= IDENTITY_TTL_S


async def test_an_entry_dead_lettered_by_another_consumer_keeps_its_records(
    redis: Redis,
) -> None:
    # c1 is slow: c2 took the entry over and dead-lettered it, then c1 finishes and
    # acknowledges with "delete the records once acknowledged". They must stay for
    # the replay of the dead letter.
    await redis.xgroup_create(STREAM, "rules", id="0", mkstream=True)
    entry_id = await redis.xadd(STREAM, reading(1.0))
    await redis.xreadgroup("rules", "c1", {STREAM: ">"})
    key = steps_key(STREAM, entry_id)
    await redis.hset(key, "r:open", "{}")
    await redis.expire(key, DEFAULT_STEP_RECORD_TTL_S)
    slow = GroupMember(redis, group="rules", consumer="c1", dead_letter_streams={})
    other = GroupMember(
        redis, group="rules", consumer="c2", dead_letter_streams={STREAM: f"{STREAM}:dlq"}
    )
    [(_, fields)] = await redis.xrange(STREAM)
    failure = Failure(reason="refused", error_type="CallFailedError", attempts=5)
    assert (
        await other.dead_letter(other.delivery(STREAM, entry_id, fields, 5), failure, at_s=0.0)
        is not None
    )

    write = AckWrite(key, "r:attach", "{}", DEFAULT_STEP_RECORD_TTL_S, settle_ttl_s=0)
    acked = await slow.ack([(slow.delivery(STREAM, entry_id, fields, 1), [write])])

    assert acked == [False]
    assert await redis.hkeys(key) == ["r:open", "r:attach"]  # its work is recorded
    assert await redis.ttl(key) > IDENTITY_TTL_S
