"""``kafka_publish`` in a rule, through the rules handler and the consumer's
acknowledgement on a real Redis, against a real broker (Tansu): an entry whose later
step fails is delivered again, and its publish step does not publish again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallContext, CallPolicy, CapabilitySpec
from framework.consuming.delivery import Delivery
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.errors import CallFailedError
from framework.testing import FakeClock, TansuBroker
from providers.kafka import DEDUPE_HEADER, KafkaActions
from tests.execution_deps import execution_deps
from tests.kafka_peer import create_topic, unique_topic
from tests.providers.kafka.test_kafka_publish import records_of

STREAM = "sensor-readings"


class Flaky:
    """A capability that fails its first call (a retryable error), then succeeds."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, params: Mapping[str, Any], context: CallContext) -> str:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("the ticket service is down")
        return "ticket-1"


async def settle(redis: Redis, handler: RulesHandler, delivery: Delivery) -> None:
    writes = await handler.handle(delivery)
    await GroupMember(redis, group="rules", consumer="c-1",
                      dead_letter_streams={}).ack([(delivery, writes or ())])


async def test_a_redelivered_entry_does_not_publish_its_record_again(
    redis: Redis, kafka: TansuBroker,
) -> None:
    topic = unique_topic("rules")
    await create_topic(kafka.bootstrap, topic, 1)
    actions = KafkaActions(policy=CallPolicy(max_retries=0))
    flaky = Flaky()
    registry = CapabilityRegistry()
    for spec in actions.specs():
        registry.register(spec)
    registry.register(CapabilitySpec("open_ticket", "1.0.0", flaky,
                                     policy=CallPolicy(max_retries=0)))
    rules = parse_rules({"version": 1, "rules": [{
        "name": "hot-tank", "match": {"stream": STREAM, "if": "payload.value > 8.5"},
        "steps": [
            {"id": "publish", "call": "kafka_publish", "version": "^1",
             "params": {"brokers": [kafka.bootstrap], "topic": topic,
                        "key": "{{ payload.nodeId }}",
                        "value": {"tank": "{{ payload.nodeId }}",
                                  "celsius": "{{ payload.value }}"}}},
            {"id": "ticket", "call": "open_ticket", "version": "^1", "params": {}},
        ]}]})
    handler = RulesHandler(rules, RegistryExecutor(registry, execution_deps(redis, FakeClock())),
                           redis=redis)
    event = {"type": "reading", "source": "sensor:tank", "correlation_id": "c-1",
             "payload": {"value": 9.1, "nodeId": "tank-4"}}
    entry_id = await redis.xadd(STREAM, {"event": orjson.dumps(event).decode()})
    [(read_id, fields)] = await redis.xrange(STREAM, entry_id, entry_id)
    delivery = Delivery(STREAM, read_id, fields, "rules", "c-1")
    try:
        with pytest.raises(CallFailedError, match="ticket service is down"):
            await settle(redis, handler, delivery)
        await settle(redis, handler, replace(delivery, delivery_count=2))
    finally:
        await actions.aclose()

    assert flaky.calls == 2
    [record] = await records_of(kafka.bootstrap, topic)
    assert orjson.loads(record.value) == {"tank": "tank-4", "celsius": 9.1}
    assert record.key == b"tank-4"
    assert dict(record.headers)[DEDUPE_HEADER] == f"{STREAM}:{read_id}:hot-tank:publish".encode()
