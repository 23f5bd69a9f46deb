"""``Reader``: takes entries for a consumer, never more than ``max_in_flight`` held.

New entries come from XREADGROUP ``>``; entries idle past ``claim_idle_ms`` (their
consumer crashed or stopped) from XAUTOCLAIM, each stream scanned every quarter of
that timeout. An entry delivered more than ``max_deliveries`` times is dead-lettered
instead of run again. With several streams and little capacity, they are read in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from redis import exceptions as redis_errors

from framework.consuming.consumer.context import REDIS_DOWN, ConsumerContext
from framework.consuming.consumer.in_flight import InFlight
from framework.consuming.consumer.settling import Settler
from framework.consuming.consumer.slot_reads import SlotReads
from framework.consuming.dead_letters import Failure
from framework.consuming.delivery import Delivery
from framework.consuming.entries import Fields, Undecodable
from framework.consuming.group import Entry
from framework.core.connections import redis_failures

# (stream, entry id, fields, delivery count) -> the delivery, held and started.
Dispatch = Callable[[str, str, Mapping[str, str], int], Delivery]


class Reader:
    def __init__(self, ctx: ConsumerContext, in_flight: InFlight, settler: Settler, *,
                 dispatch: Dispatch, stop: Callable[[], None]) -> None:
        self._ctx = ctx
        self._options = ctx.options
        self._log = ctx.log
        self._in_flight = in_flight
        self._settler = settler
        self._dispatch = dispatch
        self._stop = stop
        self._read_offset = 0
        self._next_claim_s = dict.fromkeys(ctx.options.streams, 0.0)
        self._claim_interval_s = ctx.options.claim_idle_ms / 4000
        member = ctx.member
        self._reads = SlotReads(ctx.options.streams, self._read_call, cluster=member.cluster,
                                max_in_flight=ctx.options.max_in_flight)

    async def ensure_groups(self) -> None:
        while not self._in_flight.stopping:
            try:
                for stream in self._options.streams:
                    await self._ensure_group(stream)
                return
            except REDIS_DOWN as exc:
                await self._in_flight.pause(self._ctx.backoff.next_pause_s("create_group", exc))

    async def _ensure_group(self, stream: str) -> None:
        start_id = self._options.start_id
        started_at = await self._ctx.member.create_group(stream, start_id=start_id,
                                                         at_s=self._ctx.clock.time())
        if started_at is not None:
            # "$" skips what the stream already holds: say so, with the id it resolved to.
            self._log.info("group_created", stream=stream, start_id=start_id,
                           started_at_id=started_at)
        else:
            self._log.info("group_joined", stream=stream,
                           start_id_ignored=start_id, reason="the group exists already")

    async def read_until_stopped(self) -> None:
        try:
            await self._read_turns()
        except BaseException:
            await self._reads.cancel()
            raise
        # Reads of other slots still blocked: what they return is ours, to run now.
        await self._dispatch_entries(await self._reads.finish())

    async def _read_turns(self) -> None:
        in_flight = self._in_flight
        while not in_flight.stopping:
            in_flight.changed.clear()
            # Each turn, not each entry: it is sampled, not summed.
            self._ctx.publish_in_flight(len(in_flight))
            if not self._reads.can_read(in_flight.capacity()):
                await in_flight.changed.wait()
                continue
            try:
                async with redis_failures():
                    await self._take_entries()
                self._ctx.backoff.reset()
            except REDIS_DOWN as exc:
                await in_flight.pause(self._ctx.backoff.next_pause_s("read", exc))
            except redis_errors.ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # The stream or the group was deleted under us: create it again.
                self._log.warning("group_missing", error=str(exc))
                await self.ensure_groups()

    async def _take_entries(self) -> None:
        await self._redeliver_due()
        await self._reclaim_due()
        if self._in_flight.capacity() and not self._in_flight.stopping:
            read = await self._read_new()
            if self._options.burst and not read and self._reads.drained:
                self._log.info("burst_done")
                self._stop()

    async def _read_new(self) -> int:
        capacity = self._in_flight.capacity()
        entries = await self._reads.read(self._read_plan(capacity), capacity=capacity,
                                         block_ms=self._block_ms(),
                                         wake=self._in_flight.changed)
        await self._dispatch_entries(entries)
        return len(entries)

    async def _read_call(self, streams: list[str], count: int, block_ms: int) -> list[Entry]:
        # COUNT applies to each stream: the caller split the capacity among them.
        return await self._ctx.member.read(streams, count=count, block_ms=block_ms)

    async def _dispatch_entries(self, entries: list[Entry]) -> None:
        dispatch = self._dispatch
        self._observe_received([dispatch(stream, entry_id, fields, 1)
                                for stream, entry_id, fields in entries
                                if not isinstance(fields, Undecodable)])
        for stream, entry_id, fields in entries:
            if isinstance(fields, Undecodable):
                await self._dead_letter_undecodable(stream, entry_id, fields, 1)

    def _read_plan(self, capacity: int) -> list[str]:
        """The streams to read now: all of them, or in turn when capacity is short."""
        streams = self._options.streams
        if capacity >= len(streams):
            return list(streams)
        start = self._read_offset % len(streams)
        self._read_offset += capacity
        return [streams[(start + i) % len(streams)] for i in range(capacity)]

    def _block_ms(self) -> int:
        wake_s = min(self._next_claim_s.values())
        next_due_s = self._in_flight.next_due_s()
        if next_due_s is not None:
            wake_s = min(wake_s, next_due_s)
        until_s = wake_s - self._ctx.clock.monotonic()
        return max(1, min(self._options.block_ms, int(until_s * 1000)))

    def _free(self) -> int:
        """Slots neither held nor reserved by a read of another slot still under way."""
        return self._in_flight.capacity() - self._reads.reserved

    async def _redeliver_due(self) -> None:
        """Entries whose retry backoff is over: delivered to us again (Redis counts it)."""
        in_flight = self._in_flight
        for delivery in in_flight.take_due(self._ctx.clock.monotonic(), self._free()):
            if not await self._ctx.member.redeliver(delivery):
                self._log.warning("entry_lost", stream=delivery.stream,
                                  entry_id=delivery.entry_id,
                                  reason="no longer pending for this consumer")
                continue
            self._dispatch(delivery.stream, delivery.entry_id, delivery.fields,
                           delivery.delivery_count + 1)

    def _observe_received(self, deliveries: list[Delivery]) -> None:
        if self._ctx.metrics is not None and deliveries:
            self._ctx.metrics.observe_received(deliveries,
                                               now_ms=int(self._ctx.clock.time() * 1000))

    async def _reclaim_due(self) -> None:
        for stream in self._options.streams:
            now = self._ctx.clock.monotonic()
            if self._free() <= 0 or now < self._next_claim_s[stream]:
                continue
            more = await self._reclaim(stream, self._free())
            self._next_claim_s[stream] = now + (0.0 if more else self._claim_interval_s)

    async def _reclaim(self, stream: str, count: int) -> bool:
        """Take over entries idle past the visibility timeout; True if there may be more."""
        claimed = await self._ctx.member.reclaim(
            stream, min_idle_ms=self._options.claim_idle_ms, count=count,
            skip=self._in_flight.held_ids(stream))
        if claimed.deleted:
            # Trimmed (MAXLEN) or deleted before anybody finished them: nothing to run.
            self._log.warning("pending_entries_deleted", stream=stream, entry_ids=claimed.deleted)
        for entry_id, fields, count_ in claimed.entries:
            await self._take_over(stream, entry_id, fields, count_)
        return claimed.more

    async def _take_over(self, stream: str, entry_id: str, fields: Fields,
                         count: int) -> None:
        self._log.info("entry_reclaimed", stream=stream, entry_id=entry_id, delivery_count=count)
        self._ctx.count(stream, "reclaimed")
        if isinstance(fields, Undecodable):
            await self._dead_letter_undecodable(stream, entry_id, fields, count)
            return
        if count <= self._options.max_deliveries:
            self._observe_received([self._dispatch(stream, entry_id, fields, count)])
            return
        delivery = self._ctx.member.delivery(stream, entry_id, fields, count)
        await self._settler.dead_letter(delivery, await self._abandoned_failure(delivery))

    async def _dead_letter_undecodable(self, stream: str, entry_id: str,
                                       fields: Undecodable, count: int) -> None:
        """Not UTF-8: no handler can read it, and retrying will not change its bytes."""
        delivery = self._ctx.member.delivery(stream, entry_id, fields.readable(), count)
        failure = Failure(reason=fields.reason(stream, entry_id),
                          error_type="UndecodableEntry", attempts=count)
        await self._settler.dead_letter(delivery, failure, undecodable=fields)

    async def _abandoned_failure(self, delivery: Delivery) -> Failure:
        """Why an entry delivered too many times is dead-lettered: its last error, if any."""
        count, limit = delivery.delivery_count, self._options.max_deliveries
        last = await self._ctx.member.last_error(delivery)
        reason = (f"delivered {count} times (max_deliveries {limit}) without completing; "
                  + (f"last error: {last['error']}" if last else
                     "the consumers that had it stopped before finishing"))
        return Failure(
            reason=reason, error_type=str(last.get("errorType", "")) if last else "Abandoned",
            attempts=count - 1, rule=last.get("rule") if last else None,
            step=last.get("step") if last else None)
