"""Alerts of failed capability calls: a ``base-event/1`` entry on ``capability-alerts``."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from framework.core.clock import Clock, iso_utc
from framework.core.keys import DEFAULT_STREAM_MAXLEN
from framework.trust.execution.call import VerifiedCall


class AlertStream:
    def __init__(self, redis: Redis, clock: Clock, stream: str) -> None:
        self._redis = redis
        self._clock = clock
        self._stream = stream

    async def announce(self, call: VerifiedCall, *, stage: str, reason: str, strategy: str,
                       rollback_ok: bool, audit_seq: int) -> None:
        definition = call.definition
        event = {
            "type": "capability.rollback" if strategy != "none" else "capability.failure",
            "source": "safe-executor", "timestamp": iso_utc(self._clock.time()),
            "priority": "critical" if not rollback_ok else "high",
            "correlation_id": call.idempotency_key,
            "payload": {"capability": definition.id, "version": definition.version,
                        "rule": call.rule, "step": call.step, "stage": stage,
                        "reason": reason, "strategy": strategy, "rollbackOk": rollback_ok,
                        "params": dict(call.params), "auditSeq": audit_seq},
        }
        await self._redis.xadd(
            self._stream,
            {"schema": "base-event/1", "event": orjson.dumps(event, default=str).decode()},
            maxlen=DEFAULT_STREAM_MAXLEN, approximate=True)
