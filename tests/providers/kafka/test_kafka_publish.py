"""``kafka_publish`` against a real Kafka-API broker (Tansu) and Redis: a call that
succeeds, every parameter error, a target that fails until the breaker opens, and
a redelivered event that does not publish twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

import providers.kafka
from framework.consuming import BreakerBoard, CallContext, CallPolicy
from framework.consuming.capabilities.breaker import BreakerPolicy, BreakerState
from framework.consuming.capabilities.invocation import invoke
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.core import Deadlines, get_logger
from framework.core.clock import SystemClock
from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    PermanentCallError,
    RolledBackError,
)
from framework.core.keys import ALERTS_STREAM
from framework.testing import FakeClock, TansuBroker
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from providers.kafka import DEDUPE_HEADER, KafkaActions
from tests.consuming.test_invocation import run_with_clock
from tests.kafka_peer import create_topic, unique_topic
from tests.trust.test_safe_executor import build_executor

DEADLINES = Deadlines()


@pytest.fixture
async def actions() -> AsyncIterator[KafkaActions]:
    kafka_actions = KafkaActions(policy=CallPolicy(max_retries=0), request_timeout_ms=3000)
    yield kafka_actions
    await kafka_actions.aclose()


def call_context(redis: Redis, key: str = "signals:1-0:route:publish",
                 clock: FakeClock | None = None) -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=clock or FakeClock(),
                       logger=get_logger(test="kafka_publish"))


async def records_of(bootstrap: str, topic: str, partitions: int = 1) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        records: list[Any] = []
        for _ in range(5):
            fetched = await consumer.getmany(timeout_ms=300)
            records += [r for batch in fetched.values() for r in batch]
        return records
    finally:
        await consumer.stop()


async def test_a_record_is_published_with_its_key_headers_and_the_step_identity(
    redis: Redis, kafka: TansuBroker, actions: KafkaActions,
) -> None:
    topic = unique_topic("out")
    await create_topic(kafka.bootstrap, topic, 2)
    spec = actions.specs()[0]
    params = {"brokers": [kafka.bootstrap], "topic": topic, "key": "tank-1", "partition": 1,
              "value": {"alarm": "high", "level": 9.5}, "headers": {"source": "rules"}}

    result = await invoke(spec, params, call_context(redis), deadlines=DEADLINES)

    assert result == {"topic": topic, "partition": 1, "offset": 0}
    [record] = await records_of(kafka.bootstrap, topic, partitions=2)
    assert (record.partition, record.key) == (1, b"tank-1")
    assert orjson.loads(record.value) == {"alarm": "high", "level": 9.5}
    assert dict(record.headers) == {"source": b"rules",
                                    DEDUPE_HEADER: b"signals:1-0:route:publish"}


async def test_a_redelivered_event_does_not_publish_twice(
    redis: Redis, kafka: TansuBroker, actions: KafkaActions,
) -> None:
    topic = unique_topic("once")
    await create_topic(kafka.bootstrap, topic, 1)
    spec = actions.specs()[0]
    params = {"brokers": [kafka.bootstrap], "topic": topic, "value": {"n": 1}, "key": 7}

    first = await invoke(spec, params, call_context(redis, "s:7-0:r:step"), deadlines=DEADLINES)
    # The consumer crashed before recording the step: the entry comes back.
    again = await invoke(spec, params, call_context(redis, "s:7-0:r:step"), deadlines=DEADLINES)
    other = await invoke(spec, params, call_context(redis, "s:8-0:r:step"), deadlines=DEADLINES)

    assert again == {**first, "duplicate": True}
    assert other["offset"] == first["offset"] + 1
    records = await records_of(kafka.bootstrap, topic)
    assert [dict(r.headers)[DEDUPE_HEADER] for r in records] == [b"s:7-0:r:step",
                                                                  b"s:8-0:r:step"]
    assert {r.key for r in records} == {b"7"}  # a numeric key is sent as its text


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no topic", {"value": 1}, "topic"),
    ("bad topic", {"topic": "a b", "value": 1}, "not a Kafka topic name"),
    ("no value", {"topic": "t"}, "value"),
    ("no brokers", {"brokers": [], "topic": "t", "value": 1}, "brokers"),
    ("bad broker", {"brokers": ["nohost"], "topic": "t", "value": 1}, "not host:port"),
    ("negative partition", {"topic": "t", "value": 1, "partition": -1}, "partition"),
    ("header not text", {"topic": "t", "value": 1, "headers": {"h": 1}}, "headers.h"),
    ("key not text", {"topic": "t", "value": 1, "key": ["a"]}, "key"),
    ("unknown field", {"topic": "t", "value": 1, "acks": 0}, "acks"),
    ("sasl without protocol", {"topic": "t", "value": 1, "sasl": {
        "mechanism": "PLAIN", "username": "u", "password": "p"}}, "sasl is required"),
]


@pytest.mark.parametrize(("params", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_every_parameter_error_is_named_and_never_retried(
    redis: Redis, actions: KafkaActions, params: dict[str, Any], expected: str,
) -> None:
    spec = actions.specs()[0]
    full = {"brokers": ["127.0.0.1:9"], **params}
    with pytest.raises(PermanentCallError) as caught:
        await invoke(spec, full, call_context(redis), deadlines=DEADLINES)
    assert caught.value.attempts == 1
    assert "kafka_publish params" in str(caught.value) and expected in str(caught.value)


class GoneBroker:
    """A port that accepts connections and drops them at once, counting them."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(drop, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def test_a_failing_broker_is_retried_then_the_breaker_opens(redis: Redis) -> None:
    clock = FakeClock()
    board = BreakerBoard(redis=redis, clock=clock, logger=get_logger(test="kafka_publish"))
    policy = CallPolicy(max_retries=1, breaker=BreakerPolicy(failure_threshold=4))
    actions = KafkaActions(policy=policy, request_timeout_ms=2000)
    spec = actions.specs()[0]
    gone = GoneBroker()
    try:
        async with gone as broker:
            params = {"brokers": [broker], "topic": "t", "value": 1}
            for _ in range(2):
                with pytest.raises(CallFailedError, match="cannot connect") as failed:
                    await run_with_clock(clock, invoke(spec, params, call_context(redis,
                                                       clock=clock),
                                                       deadlines=DEADLINES, breakers=board))
                assert failed.value.attempts == 2
            assert board.state(spec.breaker_key(params)) is BreakerState.OPEN
            tried = gone.connections
            with pytest.raises(CircuitOpenError):
                await invoke(spec, params, call_context(redis, clock=clock),
                             deadlines=DEADLINES, breakers=board)
            assert gone.connections == tried  # failing fast: the broker is not tried
    finally:
        await actions.aclose()
    assert spec.breaker_key(params) == f"kafka_publish@{broker}"


TEMPLATE = Path(providers.kafka.__file__).parent / "kafka_publish_v1.0.0.json"


async def signed_pipeline(redis: Redis, actions: KafkaActions, **changes: Any
                          ) -> CapabilityExecutor:
    """The safe pipeline with the shipped template, signed, in the catalog."""
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(),
                      logger=get_logger(test="catalog"))
    raw = {**orjson.loads(TEMPLATE.read_bytes()), **changes}
    await catalog.register(parse_definition(raw, source=str(TEMPLATE)).signed_with(key))
    registry = CapabilityRegistry()
    for spec in actions.specs():
        registry.register(spec)
    return build_executor(redis, catalog, registry)


def publish_request(bootstrap: str, topic: str) -> CallRequest:
    return CallRequest(capability_id="kafka_publish", version_range="^1",
                       params={"brokers": [bootstrap], "topic": topic, "value": {"n": 1}},
                       idempotency_key="signals:3-0:route:publish", event={},
                       rule="route", step="publish")


async def test_the_signed_template_runs_through_the_pipeline_and_is_audited(
    redis: Redis, kafka: TansuBroker, actions: KafkaActions,
) -> None:
    topic = unique_topic("signed")
    await create_topic(kafka.bootstrap, topic, 1)
    executor = await signed_pipeline(redis, actions)

    result = await executor.execute(publish_request(kafka.bootstrap, topic))

    assert result == {"topic": topic, "partition": 0, "offset": 0}
    [executed] = [r async for r in AuditChain(redis).records()]
    assert (executed.kind, executed.body["capability"]) == ("executed", "kafka_publish")


async def test_a_postcondition_that_fails_is_audited_with_its_rollback_and_alerts(
    redis: Redis, kafka: TansuBroker, actions: KafkaActions,
) -> None:
    topic = unique_topic("post")
    await create_topic(kafka.bootstrap, topic, 1)
    failing = [{"check": "result.partition == 7", "description": "landed on partition 7",
                "timeoutMs": 200, "pollIntervalMs": 50}]
    executor = await signed_pipeline(redis, actions, postconditions=failing)

    with pytest.raises(RolledBackError):
        await executor.execute(publish_request(kafka.bootstrap, topic))

    records = [r async for r in AuditChain(redis).records()]
    assert [(r.kind, r.body.get("stage")) for r in records][:1] == [("failed", "postcondition")]
    [(_, alert)] = await redis.xrange(ALERTS_STREAM)
    assert "kafka_publish" in alert["event"]
