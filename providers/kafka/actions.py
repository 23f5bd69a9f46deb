"""``kafka_publish``: one record to a Kafka topic, acks=all, with a key and headers.

Effectively once per rule step. The consumer records a completed step and skips
it on redelivery; what is left is a crash (or a lost answer) between the broker's
ack and that record. Two things cover it, since Tansu and many managed brokers
have no idempotent producer to lean on:
- after the broker acks, the result is kept in Redis under the call's idempotency
  key (``kafka:published:{key}``, 24 h): a call that finds it answers with it
  (``duplicate: true``) and publishes nothing;
- every record carries the step's identity in the header
  :data:`DEDUPE_HEADER` (``stream:entry:rule:step``, the same on every retry and
  redelivery), so a reader can drop the rare copy a retry after a lost ack makes.

Broker errors that Kafka marks retriable (not enough replicas, leader moving, a
timeout) are retried by the invoker and count toward the breaker of the target
brokers; the others (too large, not authorized, unknown topic) are not retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BeforeValidator, Field, ValidationError

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, describe_validation_error
from framework.core import PermanentSourceError, TransientSourceError
from providers.kafka.config import KafkaConnection, Topic

DEDUPE_HEADER = "fleet-idempotency-key"
PUBLISHED_KEY_PREFIX = "kafka:published:"
PUBLISHED_TTL_S = 24 * 3600
_REQUEST_TIMEOUT_MS = 10_000


def _number_as_text(value: Any) -> Any:
    """A key templated from a numeric field (``{{ payload.id }}`` keeps its type)."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class KafkaPublishParams(KafkaConnection):
    topic: Topic
    # Sent as JSON.
    value: Any
    key: Annotated[str | None, BeforeValidator(_number_as_text)] = None
    headers: dict[str, str] = Field(default_factory=dict)
    partition: int | None = Field(None, ge=0)


def _target(params: Mapping[str, Any]) -> str | None:
    """The brokers: the breaker scope (one breaker per cluster)."""
    brokers = params.get("brokers")
    if isinstance(brokers, list):
        return ",".join(str(b) for b in brokers)
    return brokers if isinstance(brokers, str) else None


class KafkaActions:
    """``kafka_publish`` over one producer per cluster and security (``aclose`` it)."""

    def __init__(self, *, policy: CallPolicy | None = None,
                 request_timeout_ms: int = _REQUEST_TIMEOUT_MS) -> None:
        self._policy = policy or CallPolicy()
        self._request_timeout_ms = request_timeout_ms
        self._producers: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    def specs(self) -> list[CapabilitySpec]:
        return [CapabilitySpec(
            "kafka_publish", "1.0.0", self.kafka_publish, policy=self._policy,
            description="Publish one JSON record to a Kafka topic (acks=all, key, headers)",
            breaker_scope=_target)]

    async def aclose(self) -> None:
        producers, self._producers = list(self._producers.values()), {}
        for producer in producers:
            await _stop_quietly(producer)

    async def kafka_publish(self, params: Mapping[str, Any], context: CallContext
                            ) -> dict[str, Any]:
        call = _validated(params)
        marker = PUBLISHED_KEY_PREFIX + context.idempotency_key
        earlier = await context.redis.get(marker)
        if earlier is not None:
            context.logger.info("kafka_publish_duplicate", topic=call.topic,
                                idempotency_key=context.idempotency_key)
            return {**orjson.loads(earlier), "duplicate": True}
        where = f"kafka_publish to {call.topic} on {','.join(call.brokers)}"
        producer = await self._producer_for(call, where)
        headers = [*((name, value.encode()) for name, value in call.headers.items()),
                   (DEDUPE_HEADER, context.idempotency_key.encode())]
        try:
            sent = await producer.send_and_wait(
                call.topic, orjson.dumps(call.value),
                key=call.key.encode() if call.key is not None else None,
                headers=headers, partition=call.partition)
        except KafkaError as exc:
            raise _failure(where, exc) from None
        result = {"topic": sent.topic, "partition": sent.partition, "offset": sent.offset}
        await context.redis.set(marker, orjson.dumps(result), ex=PUBLISHED_TTL_S)
        return result

    async def _producer_for(self, call: KafkaPublishParams, where: str) -> Any:
        connection = KafkaConnection.model_validate(call.model_dump(
            include=set(KafkaConnection.model_fields)))
        name = connection.model_dump_json()
        async with self._lock:
            if name in self._producers:
                return self._producers[name]
            # aiokafka's producer is unannotated: held as Any.
            producer: Any = AIOKafkaProducer(  # type: ignore[no-untyped-call]
                bootstrap_servers=connection.brokers, acks="all",
                request_timeout_ms=self._request_timeout_ms, **connection.client_options())
            try:
                async with asyncio.timeout(self._request_timeout_ms / 1000):
                    await producer.start()
            except (KafkaError, TimeoutError, OSError) as exc:
                await _stop_quietly(producer)
                raise TransientSourceError(
                    f"{where}: cannot connect: {type(exc).__name__}: {exc}") from None
            self._producers[name] = producer
            return producer


def _validated(params: Mapping[str, Any]) -> KafkaPublishParams:
    try:
        return KafkaPublishParams.model_validate(dict(params))
    except ValidationError as exc:
        # A ValueError: invoke does not retry it (the same parameters fail again).
        raise ValueError(f"kafka_publish params: {describe_validation_error(exc)}") from None


def _failure(where: str, exc: KafkaError) -> Exception:
    message = f"{where}: {type(exc).__name__}: {exc}"
    if getattr(exc, "retriable", False) or isinstance(exc, TimeoutError):
        return TransientSourceError(message)
    return PermanentSourceError(message)


async def _stop_quietly(producer: Any) -> None:
    try:
        async with asyncio.timeout(5):
            await producer.stop()
    except Exception:  # a producer that cannot say goodbye is dropped all the same
        return
