"""RulesHandler end to end: real Redis streams, real HTTP targets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallContext, CallPolicy, CapabilitySpec
from framework.consuming.delivery import AckWrite, Delivery
from framework.consuming.events import parse_event
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    DeadLetterError,
    InvalidEventError,
)
from framework.core.keys import REPLAY_OF_FIELD, steps_key
from framework.testing import FakeClock
from providers.builtin import register_builtin_capabilities
from providers.http import HttpActions
from tests.execution_deps import execution_deps
from tests.rules_target import HttpTarget, TargetReply

STREAM = "events"


@dataclass
class Rig:
    redis: Redis
    target: HttpTarget
    executor: RegistryExecutor

    def handler(self, *rules: dict[str, Any]) -> RulesHandler:
        rule_set = parse_rules({"version": 1, "rules": list(rules)},
                               env={"TARGET": self.target.url})
        return RulesHandler(rule_set, self.executor, redis=self.redis)

    async def settle(self, handler: RulesHandler, delivery: Delivery) -> None:
        """handle(), then what the consumer does when it returns: acknowledge the entry
        with the records the handler returned, in one script (consumer_ack.lua)."""
        writes = await handler.handle(delivery)
        await GroupMember(self.redis, group="rules", consumer="consumer-1",
                          dead_letter_streams={}).ack([(delivery, writes or ())])

    async def deliver(self, document: dict[str, Any], stream: str = STREAM) -> Delivery:
        entry_id = await self.redis.xadd(stream, {"event": orjson.dumps(document).decode()})
        [(read_id, fields)] = await self.redis.xrange(stream, entry_id, entry_id)
        return Delivery(stream, read_id, fields, "rules", "consumer-1")


def redelivered(delivery: Delivery, count: int = 2) -> Delivery:
    """The same entry as the consumer hands it over again: Redis counted the delivery."""
    return replace(delivery, delivery_count=count)


@pytest.fixture
async def rig(redis: Redis) -> AsyncIterator[Rig]:
    registry = CapabilityRegistry()
    # No retries inside a call: each test decides what a redelivery sees.
    actions = register_builtin_capabilities(registry,
                                            http=HttpActions(policy=CallPolicy(max_retries=0)))
    executor = RegistryExecutor(registry, execution_deps(redis, FakeClock()))
    try:
        async with HttpTarget() as target:
            yield Rig(redis, target, executor)
    finally:
        await actions.aclose()


def post(step_id: str, path: str, body: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "call": "http_call", "version": "^1",
            "params": {"method": "POST", "url": "${TARGET}" + path, "json": body},
            # The targets listen on 127.0.0.1: allowed explicitly, as a deployment must.
            "allowHosts": ["127.0.0.1"], **extra}


def reading(value: float, **payload: Any) -> dict[str, Any]:
    return {"type": "reading", "source": "sensor:temperature_cuve", "correlation_id": "corr-1",
            "payload": {"value": value, "unit": "°C", "nodeId": "svm-3", **payload}}


async def test_a_rule_fires_http_call_with_the_templated_body_and_idempotency_key(
    rig: Rig,
) -> None:
    rig.target.reply("/alerts", TargetReply(201, {"ticket": "T-1"}))
    handler = rig.handler({
        "name": "hot-tank", "match": {"stream": STREAM, "if": "payload.value > 8.5"},
        "steps": [post("notify", "/alerts", {"node": "{{ payload.nodeId }}",
                                             "value": "{{ payload.value }}",
                                             "text": "{{ payload.value }} {{ payload.unit }}"})],
    })
    delivery = await rig.deliver(reading(8.9))
    await rig.settle(handler, delivery)
    await rig.settle(handler, await rig.deliver(reading(4.0)))  # does not match

    [request] = rig.target.received
    assert request.json() == {"node": "svm-3", "value": 8.9, "text": "8.9 °C"}
    assert request.headers["Idempotency-Key"] == f"{STREAM}:{delivery.entry_id}:hot-tank:notify"
    recorded = await rig.redis.hgetall(steps_key(STREAM, delivery.entry_id))
    assert orjson.loads(recorded["hot-tank:notify"]) == {"status": 201,
                                                         "json": {"ticket": "T-1"}}
    assert await rig.redis.ttl(steps_key(STREAM, delivery.entry_id)) > 0


async def test_a_redelivered_entry_resumes_at_the_step_that_had_not_completed(
    rig: Rig,
) -> None:
    rig.target.reply("/first", TargetReply(200, {"ticket": "T-7"}), TargetReply(200, {"x": 0}))
    rig.target.reply("/second", TargetReply(503), TargetReply(200, {"ok": True}))
    handler = rig.handler({
        "name": "two-steps", "match": {"stream": STREAM},
        "steps": [post("open", "/first", {"n": 1}),
                  post("attach", "/second", {"ticket": "{{ steps.open.json.ticket }}"})],
    })
    delivery = await rig.deliver(reading(9.0))
    with pytest.raises(CallFailedError, match="503"):
        await rig.settle(handler, delivery)
    # The consumer redelivers the same entry (after a crash or the retryable error).
    await rig.settle(handler, redelivered(delivery))

    assert len(rig.target.received_at("/first")) == 1
    attach = rig.target.received_at("/second")
    assert len(attach) == 2
    # The skipped step's recorded result still feeds the next step's template.
    assert attach[1].json() == {"ticket": "T-7"}
    await rig.settle(handler, redelivered(delivery, 3))  # a third delivery repeats nothing
    assert len(rig.target.received) == 3


async def test_no_redelivery_repeats_a_step_that_had_completed_on_the_first(
    rig: Rig,
) -> None:
    # The first delivery does not read the step records (nothing can be there yet):
    # what it completes must still be skipped by every later delivery.
    rig.target.reply("/a", TargetReply(200, {"n": 1}))
    rig.target.reply("/b", TargetReply(503), TargetReply(503), TargetReply(200))
    handler = rig.handler({
        "name": "pair", "match": {"stream": STREAM},
        "steps": [post("a", "/a", {}), post("b", "/b", {"n": "{{ steps.a.json.n }}"})],
    })
    first = await rig.deliver(reading(1.0))
    with pytest.raises(CallFailedError):
        await rig.settle(handler, first)
    with pytest.raises(CallFailedError):
        await rig.settle(handler, redelivered(first, 2))
    await rig.settle(handler, redelivered(first, 3))
    assert len(rig.target.received_at("/a")) == 1
    assert [r.json() for r in rig.target.received_at("/b")] == [{"n": 1}] * 3


async def test_a_replayed_dead_letter_skips_the_steps_its_original_completed(
    rig: Rig,
) -> None:
    rig.target.reply("/a", TargetReply(200, {"n": 7}))
    rig.target.reply("/b", TargetReply(422), TargetReply(200))
    handler = rig.handler({
        "name": "pair", "match": {"stream": STREAM},
        "steps": [post("a", "/a", {}), post("b", "/b", {"n": "{{ steps.a.json.n }}"})],
    })
    original = await rig.deliver(reading(1.0))
    with pytest.raises(DeadLetterError):
        await rig.settle(handler, original)
    # The replay is a new entry on its first delivery, naming the one it replays.
    entry_id = await rig.redis.xadd(STREAM, {**original.fields,
                                             REPLAY_OF_FIELD: original.entry_id})
    [(replay_id, fields)] = await rig.redis.xrange(STREAM, entry_id, entry_id)
    await rig.settle(handler, Delivery(STREAM, replay_id, fields, "rules", "consumer-1"))
    assert len(rig.target.received_at("/a")) == 1
    assert [r.json() for r in rig.target.received_at("/b")] == [{"n": 7}, {"n": 7}]


async def test_many_entries_in_flight_each_get_their_own_step_records(rig: Rig) -> None:
    rig.target.reply("/each", TargetReply(200, {"ok": True}))
    handler = rig.handler({"name": "each", "match": {"stream": STREAM},
                           "steps": [post("s", "/each", {"v": "{{ payload.value }}"})]})
    deliveries = [await rig.deliver(reading(float(i))) for i in range(20)]
    await asyncio.gather(*(rig.settle(handler, d) for d in deliveries))
    for delivery in deliveries:
        recorded = await rig.redis.hgetall(steps_key(STREAM, delivery.entry_id))
        assert orjson.loads(recorded["each:s"]) == {"status": 200, "json": {"ok": True}}
    # Redelivered together, none runs again.
    await asyncio.gather(*(rig.settle(handler, redelivered(d)) for d in deliveries))
    assert len(rig.target.received_at("/each")) == 20


async def test_branch_steps_run_then_or_else(rig: Rig) -> None:
    rig.target.reply("/tickets", TargetReply(201))
    rig.target.reply("/notes", TargetReply(200))
    handler = rig.handler({
        "name": "diagnose", "match": {"stream": STREAM},
        "steps": [{"id": "route", "if": "payload.diagnosis == 'hardware_fault'",
                   "then": [post("ticket", "/tickets", {"node": "{{ payload.nodeId }}"})],
                   "else": [post("note", "/notes", {"why": "{{ payload.diagnosis }}"})]}],
    })
    await rig.settle(handler, await rig.deliver(reading(9.0, diagnosis="hardware_fault")))
    await rig.settle(handler, await rig.deliver(reading(9.0, diagnosis="network_outage")))
    assert [r.json() for r in rig.target.received_at("/tickets")] == [{"node": "svm-3"}]
    assert [r.json() for r in rig.target.received_at("/notes")] == [{"why": "network_outage"}]


async def test_an_emit_step_adds_a_valid_base_event_once(rig: Rig) -> None:
    rig.target.reply("/after", TargetReply(500), TargetReply(200))
    handler = rig.handler({
        "name": "forward", "match": {"stream": STREAM},
        "steps": [{"id": "out", "emit": {"stream": "alerts", "event": {
                      "type": "tank.hot", "priority": "high",
                      "payload": {"value": "{{ payload.value }}",
                                  "node": "{{ payload.nodeId }}"}}}},
                  post("after", "/after", {})],
    })
    delivery = await rig.deliver(reading(9.5))
    with pytest.raises(CallFailedError):
        await rig.settle(handler, delivery)
    await rig.settle(handler, redelivered(delivery))

    [(entry_id, fields)] = await rig.redis.xrange("alerts")
    emitted = parse_event(Delivery("alerts", entry_id, fields, "g", "c"))
    assert (emitted.contract, emitted.type, emitted.source) == (
        "base-event/1", "tank.hot", "rule:forward")
    assert emitted.payload == {"value": 9.5, "node": "svm-3"}
    assert (emitted.priority, emitted.correlation_id) == ("high", "corr-1")


async def test_an_invalid_event_is_a_dead_letter_naming_the_field(rig: Rig) -> None:
    handler = rig.handler({"name": "any", "match": {"stream": STREAM},
                           "steps": [post("n", "/x", {})]})
    delivery = await rig.deliver({"type": "reading", "source": "s", "payload": {},
                                  "priority": "asap"})
    with pytest.raises(InvalidEventError, match="field priority"):
        await rig.settle(handler, delivery)
    assert rig.target.received == []


async def test_a_non_retryable_answer_dead_letters_naming_rule_and_step(rig: Rig) -> None:
    rig.target.reply("/strict", TargetReply(422, {"error": "value out of range"}))
    handler = rig.handler({"name": "strict", "match": {"stream": STREAM},
                           "steps": [post("send", "/strict", {"v": "{{ payload.value }}"})]})
    with pytest.raises(DeadLetterError) as caught:
        await rig.settle(handler, await rig.deliver(reading(1.0)))
    assert (caught.value.rule, caught.value.step, caught.value.attempts) == (
        "strict", "send", 1)
    assert caught.value.reason.startswith("rule strict, step send: ")
    assert "422" in caught.value.reason and "value out of range" in caught.value.reason


async def test_a_template_reading_a_missing_field_dead_letters(rig: Rig) -> None:
    handler = rig.handler({"name": "needs-site", "match": {"stream": STREAM},
                           "steps": [post("send", "/x", {"site": "{{ payload.site }}"})]})
    with pytest.raises(DeadLetterError, match="rule needs-site, step send: .*site"):
        await rig.settle(handler, await rig.deliver(reading(1.0)))
    assert rig.target.received == []


async def test_an_unknown_capability_dead_letters(rig: Rig) -> None:
    handler = rig.handler({"name": "typo", "match": {"stream": STREAM},
                           "steps": [{"call": "htp_call", "params": {}}]})
    with pytest.raises(DeadLetterError, match="htp_call: not registered"):
        await rig.settle(handler, await rig.deliver(reading(1.0)))


async def test_while_the_breaker_is_open_events_wait_or_dead_letter(rig: Rig) -> None:
    rig.target.reply("/down", TargetReply(500))
    waiting = rig.handler({"name": "w", "match": {"stream": STREAM},
                           "steps": [post("s", "/down", {})]})
    for _ in range(5):
        with pytest.raises(CallFailedError):
            await rig.settle(waiting, await rig.deliver(reading(1.0)))
    with pytest.raises(CircuitOpenError):  # retryable: the entry comes back later
        await rig.settle(waiting, await rig.deliver(reading(1.0)))
    dead_lettering = rig.handler({"name": "d", "match": {"stream": STREAM},
                                  "steps": [post("s", "/down", {}, onOpen="deadletter")]})
    with pytest.raises(DeadLetterError, match="circuit breaker .* is open"):
        await rig.settle(dead_lettering, await rig.deliver(reading(1.0)))
    assert len(rig.target.received) == 5


async def test_one_failing_rule_does_not_stop_the_others(rig: Rig) -> None:
    rig.target.reply("/bad", TargetReply(400))
    rig.target.reply("/good", TargetReply(200))
    handler = rig.handler(
        {"name": "bad", "match": {"stream": STREAM}, "steps": [post("s", "/bad", {})]},
        {"name": "good", "match": {"stream": STREAM}, "steps": [post("s", "/good", {})]},
    )
    with pytest.raises(DeadLetterError, match="rule bad"):
        await rig.settle(handler, await rig.deliver(reading(1.0)))
    assert len(rig.target.received_at("/good")) == 1


async def test_replace_rules_swaps_what_runs(rig: Rig) -> None:
    rig.target.reply("/v1", TargetReply(200))
    rig.target.reply("/v2", TargetReply(200))
    handler = rig.handler({"name": "r", "match": {"stream": STREAM},
                           "steps": [post("s", "/v1", {})]})
    await rig.settle(handler, await rig.deliver(reading(1.0)))
    handler.replace_rules(rig.handler({"name": "r", "match": {"stream": STREAM},
                                       "steps": [post("s", "/v2", {})]}).rules)
    await rig.settle(handler, await rig.deliver(reading(1.0)))
    assert [r.path for r in rig.target.received] == ["/v1", "/v2"]


async def test_a_match_condition_that_cannot_evaluate_does_not_match(rig: Rig) -> None:
    handler = rig.handler({"name": "r", "match": {"stream": STREAM,
                                                  "if": "payload.pressure > 2"},
                           "steps": [post("s", "/x", {})]})
    await rig.settle(handler, await rig.deliver(reading(1.0)))
    assert rig.target.received == []


async def test_a_steps_record_is_in_redis_before_the_next_step_and_the_last_goes_with_the_ack(
    redis: Redis,
) -> None:
    async def mark(params: Any, context: CallContext) -> Any:
        return {"n": params["n"]}

    async def look(params: Any, context: CallContext) -> Any:
        key = steps_key(context.event["stream"], context.event["entry_id"])
        return {"recorded": sorted(await context.redis.hkeys(key))}

    registry = CapabilityRegistry()
    registry.register(CapabilitySpec(id="mark", version="1.0.0", handler=mark))
    registry.register(CapabilitySpec(id="look", version="1.0.0", handler=look))
    handler = RulesHandler(parse_rules({"version": 1, "rules": [{
        "name": "r", "match": {"stream": STREAM},
        "steps": [{"id": "first", "call": "mark", "params": {"n": 1}},
                  {"id": "second", "call": "look", "params": {}}],
    }]}), RegistryExecutor(
        registry, execution_deps(redis, SystemClock())), redis=redis, step_ttl_s=120)
    entry_id = await redis.xadd(STREAM, {"event": orjson.dumps(reading(1.0)).decode()})
    delivery = Delivery(STREAM, entry_id, (await redis.xrange(STREAM))[0][1], "g", "c")

    writes = await handler.handle(delivery)

    key = steps_key(STREAM, entry_id)
    # The second step saw the first's record: written before it ran.
    # Keyed by the entry id: the records go once the entry is acknowledged (settle TTL 0).
    assert writes == (AckWrite(key, "r:second", '{"recorded":["r:first"]}', 120,
                               settle_ttl_s=0),)
    assert await redis.hkeys(key) == ["r:first"]  # the last one waits for the XACK
