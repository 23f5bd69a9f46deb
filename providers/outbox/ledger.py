"""``SentLedger``: what a step already delivered, so a redelivered event does not
send it again.

The consumer records a completed step before it acknowledges the entry, and a
redelivered entry skips recorded steps. A crash between the delivery (the SMTP
server took the message, Slack posted it) and that record would still send twice,
so each messaging action also writes its own record, ``fleet:sent:{idempotency
key}`` (the step's identity: stream, entry, rule, step), as soon as the target
confirmed, and reads it before sending. What is left is the gap between the
target's confirmation and this write: each provider narrows it where the target
can (email: the Message-ID derived from the key; FHIR: a conditional create on an
identifier derived from the key; Grist: an upsert, repeatable by nature).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import outside_deadline

SENT_PREFIX = "fleet:sent:"
# As long as the consumer keeps a step record: a redelivery after that runs as new.
DEFAULT_SENT_TTL_S = 7 * 24 * 3600


def sent_key(idempotency_key: str) -> str:
    return f"{SENT_PREFIX}{idempotency_key}"


class SentLedger:
    def __init__(self, *, ttl_s: int = DEFAULT_SENT_TTL_S) -> None:
        self._ttl_s = ttl_s

    async def recall(self, redis: Redis, idempotency_key: str) -> dict[str, Any] | None:
        # Our Redis, not the target: its wait is not the call's time.
        with outside_deadline():
            raw = await redis.get(sent_key(idempotency_key))
        return None if raw is None else dict(orjson.loads(raw))

    async def remember(self, redis: Redis, idempotency_key: str,
                       result: dict[str, Any]) -> None:
        with outside_deadline():
            await redis.set(sent_key(idempotency_key), orjson.dumps(result), ex=self._ttl_s)

    async def once(self, context: CallContext,
                   deliver: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """``deliver()``'s result marked ``"duplicate": false``, or the one recorded for
        this step marked ``"duplicate": true``, without delivering again (a
        postcondition can tell the two apart)."""
        done = await self.recall(context.redis, context.idempotency_key)
        if done is not None:
            context.logger.info("delivery_already_done", idempotency_key=context.idempotency_key)
            return {**done, "duplicate": True}
        result = await deliver()
        await self.remember(context.redis, context.idempotency_key, result)
        return {**result, "duplicate": False}
