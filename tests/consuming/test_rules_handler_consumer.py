"""RulesHandler under the real stream consumer: what reaches the target, what is
dead-lettered (with the field, rule and step), and a retried entry resuming."""

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
from framework.consuming.dead_letters import DeadLetterStream
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from providers.builtin import register_builtin_capabilities
from providers.http import HttpActions
from tests.execution_deps import execution_deps
from tests.rules_target import HttpTarget, TargetReply

STREAM = "readings"


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll ``check`` (Redis and target state: nothing to wait on as an event)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def consume_until(redis: Redis, handler: RulesHandler,
                        done: Callable[[], Awaitable[bool]]) -> None:
    # A retryable failure stays pending and is reclaimed after claim_idle_ms.
    options = ConsumerOptions(streams=(STREAM,), group="rules", consumer="c1", start_id="0",
                              block_ms=50, claim_idle_ms=200, max_deliveries=5)
    consumer = Consumer(redis, handler, options, clock=SystemClock(),
                        logger=get_logger(test="rules-consumer"))
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(done)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


def rules(url: str) -> dict[str, Any]:
    def post(step_id: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": step_id, "call": "http_call",
                "params": {"method": "POST", "url": url + path, "json": body},
                # The target listens on 127.0.0.1: allowed explicitly.
                "allowHosts": ["127.0.0.1"]}

    return {"version": 1, "rules": [{
        "name": "hot", "match": {"stream": STREAM, "payload.value": {"gt": 8.5}},
        "steps": [post("open", "/open/{{ payload.nodeId }}", {"node": "{{ payload.nodeId }}"}),
                  post("attach", "/attach", {"ticket": "{{ steps.open.json.ticket }}"})],
    }]}


def event(value: float, node: str, **extra: Any) -> dict[str, str]:
    document = {"type": "reading", "source": "sensor", "payload": {"value": value,
                                                                   "nodeId": node}, **extra}
    return {"event": orjson.dumps(document).decode()}


async def test_consumer_runs_rules_dead_letters_bad_entries_and_resumes_retried_ones(
    redis: Redis,
) -> None:
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(
        registry, http=HttpActions(policy=CallPolicy(max_retries=0)))
    executor = RegistryExecutor(registry, execution_deps(redis, SystemClock()))
    dead_letters = DeadLetterStream(redis, STREAM)
    try:
        async with HttpTarget() as target:
            target.reply("/open/svm-1", TargetReply(201, {"ticket": "T-1"}))
            target.reply("/open/svm-2", TargetReply(400, {"error": "unknown node"}))
            # The first delivery's second step fails (retryable); the retry succeeds.
            target.reply("/attach", TargetReply(503), TargetReply(200))
            handler = RulesHandler(parse_rules(rules(target.url)), executor, redis=redis)
            good = await redis.xadd(STREAM, event(9.1, "svm-1"))
            invalid = await redis.xadd(STREAM, event(9.1, "svm-1", priority="asap"))
            refused = await redis.xadd(STREAM, event(9.2, "svm-2"))
            await redis.xadd(STREAM, event(1.0, "svm-1"))  # matches no rule

            async def settled() -> bool:
                if await dead_letters.count() < 2 or len(target.received_at("/attach")) < 2:
                    return False
                return (await redis.xpending(STREAM, "rules"))["pending"] == 0

            await consume_until(redis, handler, settled)
    finally:
        await actions.aclose()

    [opened] = target.received_at("/open/svm-1")  # once: not again on the retry
    assert opened.headers["Idempotency-Key"] == f"{STREAM}:{good}:hot:open"
    assert [r.json() for r in target.received_at("/attach")] == [{"ticket": "T-1"}] * 2
    assert len(target.received_at("/open/svm-2")) == 1

    letters = {letter.entry_id: letter for letter in await dead_letters.read()}
    assert set(letters) == {invalid, refused}
    assert "field priority" in letters[invalid].reason
    assert letters[invalid].error_type == "InvalidEventError"
    assert (letters[refused].rule, letters[refused].step) == ("hot", "open")
    assert "400" in letters[refused].reason


async def test_a_replayed_dead_letter_does_not_repeat_the_steps_that_had_completed(
    redis: Redis,
) -> None:
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(
        registry, http=HttpActions(policy=CallPolicy(max_retries=0)))
    dead_letters = DeadLetterStream(redis, STREAM)
    try:
        async with HttpTarget() as target:
            target.reply("/open/svm-1", TargetReply(201, {"ticket": "T-1"}))
            # Refused (not retryable) until the operator fixes the target.
            target.reply("/attach", TargetReply(400, {"error": "no such ticket"}),
                         TargetReply(200))
            executor = RegistryExecutor(registry, execution_deps(redis, SystemClock()))
            handler = RulesHandler(parse_rules(rules(target.url)), executor, redis=redis)
            original = await redis.xadd(STREAM, event(9.1, "svm-1"))

            async def dead_lettered() -> bool:
                return await dead_letters.count() == 1

            await consume_until(redis, handler, dead_lettered)
            [letter] = await dead_letters.read()
            replayed = await dead_letters.replay(letter.id)

            async def attached() -> bool:
                return len(target.received_at("/attach")) == 2

            await consume_until(redis, handler, attached)
    finally:
        await actions.aclose()

    assert replayed is not None and replayed != original
    [(_, fields)] = await redis.xrange(STREAM, replayed, replayed)
    assert fields["replay_of"] == original
    assert len(target.received_at("/open/svm-1")) == 1  # done before the dead letter
    keys = [r.headers["Idempotency-Key"] for r in target.received_at("/attach")]
    assert keys == [f"{STREAM}:{original}:hot:attach"] * 2
    assert await dead_letters.count() == 0
