"""How often a message has been delivered, for queues that do not say.

A quorum queue counts deliveries that did not end in an ack (``x-delivery-count``).
A classic queue only flags a redelivery (``redelivered``), so a message that always
makes its batch fail (its append is refused, or it takes the process down) would
come back forever. :class:`DeliveryCounts` counts those redeliveries in Redis, in
one hash per connector next to its state (``connector:state:NAME:deliveries``, the
same hash slot): the field is the message's ``message_id``, else a SHA-256 of its
exchange, routing key and body (identical bodies without an id share a count). A
count is removed once its message is acknowledged; the hash expires after a week
without a redelivery, so counts of messages drained by someone else do not stay.

:func:`isolate` lets a redelivered message be appended in a batch of its own: when
one message keeps failing, only its count grows, and the messages after it are
appended once it is set aside as poison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar

from redis.asyncio import Redis

COUNTS_TTL_MS = 7 * 24 * 3600 * 1000


class Delivered(Protocol):
    @property
    def redelivered(self) -> bool: ...


D = TypeVar("D", bound=Delivered)


class DeliveryCounts:
    """Redeliveries per message of one connector (see the module docstring)."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    @staticmethod
    def field(message_id: str | None, exchange: str, routing_key: str, body: bytes) -> str:
        if message_id:
            return f"id:{message_id}"
        digest = hashlib.sha256(f"{exchange}\n{routing_key}\n".encode() + body).hexdigest()
        return f"sha256:{digest}"

    async def redelivered(self, field: str) -> int:
        """Count one more delivery of a redelivered message; how many there have been
        (the first, uncounted, included)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.key, field, 1)
            pipe.pexpire(self.key, COUNTS_TTL_MS)
            count, _ = await pipe.execute()
        return 1 + int(count)

    async def forget(self, fields: Sequence[str]) -> None:
        """These messages were acknowledged: their counts are done."""
        if fields:
            await self._redis.hdel(self.key, *fields)


def isolate(messages: list[D]) -> tuple[list[D], list[D]]:
    """(the batch to append, the messages to put back): a redelivered message goes
    alone; the messages before the first redelivered one go together."""
    for index, message in enumerate(messages):
        if message.redelivered:
            cut = index or 1
            return messages[:cut], messages[cut:]
    return messages, []
