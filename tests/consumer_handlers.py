"""Handlers for ``connector-fleet consume --handler tests.consumer_handlers:NAME`` in
the process tests: they record in Redis what ran, so the test can check it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallContext, CallPolicy, CapabilitySpec
from framework.consuming.delivery import Delivery
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import load_rules
from framework.core.clock import SystemClock
from framework.core.errors import DeadLetterError
from tests.execution_deps import execution_deps

STARTED = "test:started"
DONE = "test:done"


class RecordingHandler:
    """RPUSH ``test:started`` "consumer entry_id", sleep ``$HANDLER_SLEEP_S``, then
    RPUSH ``test:done`` entry_id. An entry with ``fail=1`` always raises; with
    ``invalid=1`` it is a dead letter at once."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._sleep_s = float(os.environ.get("HANDLER_SLEEP_S", "0"))

    async def handle(self, delivery: Delivery) -> None:
        await self._redis.rpush(STARTED, f"{delivery.consumer} {delivery.entry_id}")
        if delivery.fields.get("invalid"):
            raise DeadLetterError("field invalid is set", rule="test-rule")
        await asyncio.sleep(self._sleep_s)
        if delivery.fields.get("fail"):
            raise RuntimeError(f"entry {delivery.entry_id} always fails")
        await self._redis.rpush(DONE, delivery.entry_id)


def recording(redis: Redis) -> RecordingHandler:
    return RecordingHandler(redis)


CALLS = "test:calls"


async def _record_call(params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
    """RPUSH the call's idempotency key, then sleep ``$CAPABILITY_SLEEP_S`` if asked."""
    await context.redis.rpush(CALLS, context.idempotency_key)
    if params.get("slow"):
        await asyncio.sleep(float(os.environ.get("CAPABILITY_SLEEP_S", "0")))
    return {"step": params.get("step")}


def rules(redis: Redis) -> RulesHandler:
    """The rules of ``$TEST_RULES_PATH`` over a registry with the ``record`` capability."""
    registry = CapabilityRegistry()
    registry.register(CapabilitySpec("record", "1.0.0", _record_call,
                                     policy=CallPolicy(timeout_s=300, max_retries=0)))
    executor = RegistryExecutor(registry, execution_deps(redis, SystemClock()))
    return RulesHandler(load_rules(os.environ["TEST_RULES_PATH"]), executor, redis=redis)
