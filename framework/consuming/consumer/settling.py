"""``Settler``: writes what became of an entry. Acknowledgements (XACK with the records
the handler returned) are batched: the entries that finish while a round trip is on
its way share the next one. Dead letters and the error record of a failed attempt
are written one by one."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial

from framework.consuming.consumer.context import (
    REDIS_DOWN,
    ConsumerContext,
    describe_error,
    entry_fields,
)
from framework.consuming.dead_letters import Failure
from framework.consuming.delivery import AckWrite, Delivery
from framework.consuming.entries import Undecodable
from framework.core.cancellation import cancel_and_wait

# After a forced stop, how long the acknowledgements already on their way may take.
_ACK_FINISH_S = 5.0

# (delivery, outcome): outcome is "acked" or "dead_lettered".
OnSettled = Callable[[Delivery, str], None]
# Called once the entry's XACK is written (None) or failed (the error).
AckDone = Callable[[Exception | None], None]
_PendingAck = tuple[Delivery, Sequence[AckWrite], AckDone]


class Settler:
    def __init__(self, ctx: ConsumerContext, on_settled: OnSettled | None) -> None:
        self._ctx = ctx
        self._log = ctx.log
        self._on_settled = on_settled
        self._acks: list[_PendingAck] = []
        self._flusher: asyncio.Task[None] | None = None

    def ack_soon(self, delivery: Delivery, writes: Sequence[AckWrite], done: AckDone) -> None:
        """Queue the entry's XACK for the next round trip; ``done(None)`` once it is
        written (``done(error)`` if it failed beyond an outage). Nothing to await: the
        entry's task ends here, and no Future is made per entry."""
        self._acks.append((delivery, writes, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="consumer-acks")

    async def _flush(self) -> None:
        """One round trip for every entry that finished meanwhile (under load, many)."""
        await asyncio.sleep(0)  # let the handlers finishing in this iteration join
        while self._acks:
            batch, self._acks = self._acks, []
            failure: Exception | None = None
            try:
                acked = await self._ctx.settle(partial(self._ctx.member.ack,
                                                       [(d, writes) for d, writes, _ in batch]))
            except Exception as exc:  # not a Redis outage (retried): the entries stay pending
                acked, failure = [], exc
            outcomes: dict[tuple[str, str], int] = defaultdict(int)
            for index, (delivery, _, done) in enumerate(batch):
                if index < len(acked):
                    outcomes[(delivery.stream, "acked" if acked[index] else "lost")] += 1
                    self._report(delivery, acked[index], done)
                else:
                    done(failure)
            for (stream, outcome), count in outcomes.items():
                self._ctx.count(stream, outcome, count)

    def _report(self, delivery: Delivery, acked: bool, done: AckDone) -> None:
        error: Exception | None = None
        if acked:
            self._log.debug("entry_acked", **entry_fields(delivery),
                            delivery_count=delivery.delivery_count)
            if self._on_settled is not None:
                try:
                    self._on_settled(delivery, "acked")
                except Exception as exc:  # one failing callback never stops the others
                    error = exc
        else:
            # Another consumer took it over (we missed heartbeats): it ran twice.
            self._log.warning("entry_already_settled", **entry_fields(delivery),
                              delivery_count=delivery.delivery_count)
        done(error)

    async def finish_acks(self) -> None:
        """Let the acknowledgements on their way land, even after a forced stop: they
        carry the records of finished work, which would otherwise run again. Bounded:
        with Redis down they would be retried forever."""
        flusher = self._flusher
        if flusher is None or flusher.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(flusher), timeout=_ACK_FINISH_S)
        except TimeoutError:
            self._log.warning("acks_abandoned", waited_s=_ACK_FINISH_S)
            await cancel_and_wait(flusher)

    async def dead_letter(self, delivery: Delivery, failure: Failure, *,
                          undecodable: Undecodable | None = None) -> None:
        member = self._ctx.member
        letter_id = await self._ctx.settle(
            lambda: member.dead_letter(delivery, failure, at_s=self._ctx.clock.time(),
                                       undecodable=undecodable))
        if letter_id is None:
            self._log.warning("entry_already_settled", **entry_fields(delivery),
                              delivery_count=delivery.delivery_count)
            return
        self._log.warning("entry_dead_lettered", stream=delivery.stream, entry_id=delivery.entry_id,
                          dead_letter_stream=member.dead_letter_stream(delivery.stream),
                          dead_letter_id=letter_id, reason=failure.reason,
                          attempts=failure.attempts, rule=failure.rule)
        self._ctx.count(delivery.stream, "dead_lettered")
        if self._on_settled is not None:
            self._on_settled(delivery, "dead_lettered")

    async def record_error(self, delivery: Delivery, error: Exception) -> None:
        """Keep the attempt's error, for the dead letter written if the entry never succeeds."""
        record = {"error": describe_error(error), "errorType": type(error).__name__,
                  "attempts": delivery.delivery_count, "rule": getattr(error, "rule", None),
                  "step": getattr(error, "step", None)}
        try:
            await self._ctx.member.record_error(delivery, record)
        except REDIS_DOWN as exc:
            self._log.warning("error_record_failed", **entry_fields(delivery), error=str(exc))
