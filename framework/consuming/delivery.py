"""The contract between a stream consumer and the code that processes entries.

A consumer (:mod:`framework.consuming.consumer`) reads entries through a Redis consumer
group and hands each one, as a :class:`Delivery`, to an :class:`EventHandler`:

* the handler returns: the work is done, the entry is acknowledged (XACK),
  together with the :class:`AckWrite` records it returned (one script: the entry is
  never acknowledged without them);
* it raises :class:`~framework.core.errors.DeadLetterError`: the entry goes to the
  dead-letter stream with the reason, then is acknowledged;
* it raises anything else: the entry stays pending and is delivered again
  (to this or another consumer) until ``maxDeliveries``, then dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from framework.core.keys import REPLAY_OF_FIELD


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry as delivered to this consumer."""

    stream: str
    entry_id: str
    fields: Mapping[str, str]
    group: str
    consumer: str
    # 1 on the first delivery; Redis counts every (re)delivery of the entry.
    delivery_count: int = 1

    @property
    def origin_id(self) -> str:
        """The id of the entry this one replays from the dead letters, else its own."""
        return self.fields.get(REPLAY_OF_FIELD) or self.entry_id

    @property
    def identity(self) -> str:
        """What the event is, whichever entry carries it: ``item:{connector}:{item_id}:
        {version}`` for a connector's item (its fields ``connector``, ``item_id`` and
        ``version``, as framework.polling's commit.lua writes them: a copy republished
        after a failover rollback is the same event), else :attr:`origin_id`."""
        fields = self.fields
        connector, item_id, version = fields.get("connector"), fields.get("item_id"), \
            fields.get("version")
        if connector and item_id and version:
            return f"item:{connector}:{item_id}:{version}"
        return fields.get(REPLAY_OF_FIELD) or self.entry_id

    @property
    def has_identity(self) -> bool:
        """True when :attr:`identity` names the event, not the entry."""
        return self.identity != self.origin_id

    def idempotency_key(self, *parts: str) -> str:
        """``stream:identity[:part...]``: the same for every redelivery of the entry,
        for its replays from the dead letters (the steps that had completed before it
        was dead-lettered are not repeated) and for a republished copy of the event."""
        return ":".join((self.stream, self.identity, *parts))


@dataclass(frozen=True, slots=True)
class AckWrite:
    """A hash field the consumer writes in the script that acknowledges the entry:
    what the handler's work left to record (the rules handler: its last completed
    step), written with the XACK instead of in a round trip of its own before it.

    ``field`` empty: nothing is written, only ``settle_ttl_s`` applies. ``settle_ttl_s``
    (None: unchanged): the hash's TTL once this script acknowledged the entry, 0 to
    delete it; if the entry had been settled elsewhere (e.g. dead-lettered, its records
    waiting for a replay) the hash keeps its TTL."""

    key: str
    field: str
    value: str
    ttl_s: int
    settle_ttl_s: int | None = None


class EventHandler(Protocol):
    async def handle(self, delivery: Delivery) -> Sequence[AckWrite] | None:
        """Returns what to write with the acknowledgement, if anything."""
        ...
