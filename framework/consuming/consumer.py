"""``Consumer``: reads streams through a Redis consumer group and hands each entry
to an :class:`~framework.consuming.delivery.EventHandler`.

Lifecycle (arq-style): ``await consumer.run()`` returns after ``consumer.stop()``
and a bounded drain; a second ``stop()`` cancels the work still running::

    XREADGROUP >          (never more than max_in_flight entries held)  ─┐
    XAUTOCLAIM idle>claim_idle_ms (entries of crashed consumers)        ─┴─> handler
        returned               -> XACK, with the records the handler returned (one script)
        DeadLetterError        -> dead letter + XACK (one Lua script)
        other error            -> stays pending; redelivered; dead-lettered after
                                  max_deliveries deliveries
    heartbeat, every claim_idle_ms/3: XCLAIM ... JUSTID of the entries still held,
        only if still ours (consumer_touch.lua), so XAUTOCLAIM never steals them

With ``order_by``, entries with the same key run one at a time in stream order
(within this consumer), and a failing entry is retried in place (its key waits)
until it succeeds or is dead-lettered. See docs/consumers.md for the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.consuming.dead_letters import Failure
from framework.consuming.delivery import AckWrite, Delivery, EventHandler
from framework.consuming.group import GroupMember
from framework.consuming.metrics import ConsumerMetrics
from framework.consuming.options import ConsumerOptions, default_consumer_name, order_key
from framework.core.cancellation import cancel_and_wait
from framework.core.clock import Clock
from framework.core.connections import UNAVAILABLE, redis_failures
from framework.core.errors import DeadLetterError, RedisUnavailableError
from framework.core.keys import CONSUMER_HEARTBEAT_FRACTION
from framework.core.logs import Logger

__all__ = ["Consumer", "ConsumerOptions", "default_consumer_name", "order_key"]

T = TypeVar("T")
_REDIS_BACKOFF_MAX_S = 30.0
_RETRY_DELAY_MAX_S = 30.0
_POOL_HEADROOM = 16
# After a forced stop, how long the acknowledgements already on their way may take.
_ACK_FINISH_S = 5.0
_REDIS_DOWN = (*UNAVAILABLE, RedisUnavailableError)


@dataclass
class _Work:
    delivery: Delivery
    key: str | None
    task: asyncio.Task[None] | None = None
    # Its XACK or dead letter is on its way: no heartbeat may call it lost.
    settling: bool = False


class Consumer:
    def __init__(self, redis: Redis, handler: EventHandler, options: ConsumerOptions, *,
                 clock: Clock, logger: Logger, metrics: ConsumerMetrics | None = None,
                 on_settled: Callable[[Delivery, str], None] | None = None) -> None:
        """``on_settled(delivery, outcome)``: called once an entry is acknowledged
        (``acked``) or dead-lettered (``dead_lettered``), e.g. to time its completion."""
        self.options = options
        self._on_settled = on_settled
        self._handler = handler
        self._clock = clock
        self._log = logger.bind(group=options.group, consumer=options.consumer)
        self._metrics = metrics
        self._work: dict[tuple[str, str], _Work] = {}
        self._waiting: dict[str, deque[_Work]] = {}  # key -> entries behind the running one
        self._abandoned: list[Delivery] = []
        self._acks: list[tuple[Delivery, Sequence[AckWrite], asyncio.Future[bool]]] = []
        self._ack_flusher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self._forced = False
        self._named = False  # this process holds the consumer name (its heartbeat key)
        self._redis_failures = 0
        self._read_offset = 0
        self._next_claim_s = dict.fromkeys(options.streams, 0.0)
        # Each entry in flight may have a command of its handler waiting at once, besides
        # the consumer's own read, heartbeat and acknowledgements: never MaxConnectionsError.
        pool = redis.connection_pool
        pool.max_connections = max(pool.max_connections, options.max_in_flight + _POOL_HEADROOM)
        self._member = GroupMember(
            redis, group=options.group, consumer=options.consumer,
            dead_letter_streams={s: options.dead_letter_stream_of(s) for s in options.streams})
        self.started_at_s = clock.time()
        self.stopped_by_force = False  # a second stop() cancelled the work in flight

    @property
    def in_flight(self) -> int:
        return len(self._work)

    def stop(self) -> None:
        """First call: stop reading and drain (bounded). Second: cancel the work now."""
        if self._stopping:
            self._log.warning("stop_forced", in_flight=self.in_flight)
            self.stopped_by_force = True
            self._abandon()
            return
        self._stopping = True
        self._changed.set()
        self._log.info("stop_requested", in_flight=self.in_flight,
                       drain_timeout_s=self.options.drain_timeout_s)

    async def run(self) -> None:
        """Read and handle entries until stopped; then drain and release what is left."""
        if not await self._claim_name():
            return
        await self._ensure_groups()
        heartbeat = asyncio.create_task(self._keep_alive(), name="consumer-heartbeat")
        self._log.info("consumer_started", streams=list(self.options.streams),
                       max_in_flight=self.options.max_in_flight,
                       claim_idle_ms=self.options.claim_idle_ms,
                       max_deliveries=self.options.max_deliveries, order_by=self.options.order_by)
        try:
            await self._read_loop()
            await self._drain()
        finally:
            await cancel_and_wait(heartbeat)
            await self._finish_acks()
            await self._release_leftovers()
            self._publish_in_flight()
            await self._forget_heartbeat()
            self._log.info("consumer_stopped")

    # -- reading -----------------------------------------------------------------------

    async def _ensure_groups(self) -> None:
        while not self._stopping:
            try:
                for stream in self.options.streams:
                    if await self._member.create_group(stream, start_id=self.options.start_id):
                        self._log.info("group_created", stream=stream,
                                       start_id=self.options.start_id)
                return
            except _REDIS_DOWN as exc:
                await self._pause(self._redis_backoff("create_group", exc))

    async def _read_loop(self) -> None:
        while not self._stopping:
            self._changed.clear()
            self._publish_in_flight()  # each turn, not each entry: it is sampled, not summed
            if self._capacity() == 0:
                await self._changed.wait()
                continue
            try:
                async with redis_failures():
                    await self._reclaim_due()
                    if self._capacity() and not self._stopping:
                        read = await self._read_new()
                        if self.options.burst and not read:
                            self._log.info("burst_done")
                            self.stop()
                self._redis_failures = 0
            except _REDIS_DOWN as exc:
                await self._pause(self._redis_backoff("read", exc))
            except redis_errors.ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # The stream or the group was deleted under us: create it again.
                self._log.warning("group_missing", error=str(exc))
                await self._ensure_groups()

    def _capacity(self) -> int:
        return self.options.max_in_flight - len(self._work)

    async def _read_new(self) -> int:
        capacity = self._capacity()
        streams = self._read_plan(capacity)
        # COUNT applies to each stream: split the capacity so the total stays within it.
        entries = await self._member.read(streams, count=capacity // len(streams),
                                          block_ms=self._block_ms())
        self._observe_received([self._dispatch(stream, entry_id, fields, delivery_count=1)
                                for stream, entry_id, fields in entries])
        return len(entries)

    def _read_plan(self, capacity: int) -> list[str]:
        """The streams to read now: all of them, or in turn when capacity is short."""
        streams = self.options.streams
        if capacity >= len(streams):
            return list(streams)
        start = self._read_offset % len(streams)
        self._read_offset += capacity
        return [streams[(start + i) % len(streams)] for i in range(capacity)]

    def _block_ms(self) -> int:
        until_claim_s = min(self._next_claim_s.values()) - self._clock.monotonic()
        return max(1, min(self.options.block_ms, int(until_claim_s * 1000)))

    # -- reclaiming ----------------------------------------------------------------------

    @property
    def _claim_interval_s(self) -> float:
        return self.options.claim_idle_ms / 4000

    async def _reclaim_due(self) -> None:
        for stream in self.options.streams:
            now = self._clock.monotonic()
            if self._capacity() == 0 or now < self._next_claim_s[stream]:
                continue
            more = await self._reclaim(stream, self._capacity())
            self._next_claim_s[stream] = now + (0.0 if more else self._claim_interval_s)

    async def _reclaim(self, stream: str, count: int) -> bool:
        """Take over entries idle past the visibility timeout; True if there may be more."""
        claimed = await self._member.reclaim(
            stream, min_idle_ms=self.options.claim_idle_ms, count=count,
            skip={entry_id for s, entry_id in self._work if s == stream})
        if claimed.deleted:
            # Trimmed (MAXLEN) or deleted before anybody finished them: nothing to run.
            self._log.warning("pending_entries_deleted", stream=stream, entry_ids=claimed.deleted)
        for entry_id, fields, count_ in claimed.entries:
            await self._take_over(stream, entry_id, fields, count_)
        return claimed.more

    async def _take_over(self, stream: str, entry_id: str, fields: dict[str, str],
                         count: int) -> None:
        self._log.info("entry_reclaimed", stream=stream, entry_id=entry_id, delivery_count=count)
        self._count(stream, "reclaimed")
        if count <= self.options.max_deliveries:
            self._observe_received([self._dispatch(stream, entry_id, fields,
                                                   delivery_count=count)])
            return
        delivery = self._member.delivery(stream, entry_id, fields, count)
        last = await self._member.last_error(delivery)
        reason = (f"delivered {count} times (max_deliveries {self.options.max_deliveries}) "
                  "without completing; " + (f"last error: {last['error']}" if last else
                                             "the consumers that had it stopped before finishing"))
        await self._dead_letter(delivery, Failure(
            reason=reason, error_type=str(last.get("errorType", "")) if last else "Abandoned",
            attempts=count - 1, rule=last.get("rule") if last else None,
            step=last.get("step") if last else None))

    # -- handling ------------------------------------------------------------------------

    def _dispatch(self, stream: str, entry_id: str, fields: Mapping[str, str], *,
                  delivery_count: int) -> Delivery:
        delivery = self._member.delivery(stream, entry_id, fields, delivery_count)
        key = order_key(fields, self.options.order_by) if self.options.order_by else None
        work = _Work(delivery, key)
        self._work[(stream, entry_id)] = work
        if key is not None:
            if key in self._waiting:
                _enqueue_in_stream_order(self._waiting[key], work)
                return delivery
            self._waiting[key] = deque()
        self._start(work)
        return delivery

    def _observe_received(self, deliveries: list[Delivery]) -> None:
        if self._metrics is not None and deliveries:
            self._metrics.observe_received(deliveries, now_ms=int(self._clock.time() * 1000))

    def _start(self, work: _Work) -> None:
        d = work.delivery
        work.task = asyncio.create_task(self._process(work), name=f"entry:{d.stream}:{d.entry_id}")

    async def _process(self, work: _Work) -> None:
        d = work.delivery
        # This task's own context (a copy): what is bound here ends with the task.
        structlog.contextvars.bind_contextvars(
            stream=d.stream, entry_id=d.entry_id, group=d.group, consumer=d.consumer)
        try:
            await self._run_until_settled(work)
        except asyncio.CancelledError:
            self._abandoned.append(work.delivery)
            raise
        except Exception as exc:  # settling failed beyond an outage: it stays pending
            self._log.error("entry_settle_failed", error=_describe(exc), exc_info=exc)
        finally:
            self._finish(work)

    async def _run_until_settled(self, work: _Work) -> None:
        while True:
            delivery = work.delivery
            error, writes = await self._call_handler(delivery)
            work.settling = True
            if error is None:
                await self._ack(delivery, writes)
                return
            if isinstance(error, DeadLetterError):
                await self._dead_letter(delivery, Failure(
                    reason=error.reason, error_type=type(error).__name__,
                    attempts=error.attempts or delivery.delivery_count,
                    rule=error.rule, step=error.step))
                return
            if delivery.delivery_count >= self.options.max_deliveries:
                await self._dead_letter(delivery, Failure(
                    reason=f"failed {delivery.delivery_count} times (max_deliveries "
                           f"{self.options.max_deliveries}); last error: {_describe(error)}",
                    error_type=type(error).__name__, attempts=delivery.delivery_count))
                return
            work.settling = False
            await self._record_error(delivery, error)
            self._count(delivery.stream, "failed")
            if work.key is None:
                return  # stays pending: reclaimed after claim_idle_ms, by us or another
            redelivered = await self._retry_in_place(delivery)
            if redelivered is None:
                return
            work.delivery = redelivered

    async def _call_handler(self, delivery: Delivery
                            ) -> tuple[Exception | None, Sequence[AckWrite]]:
        """The handler's error, or None and what to write with the acknowledgement."""
        try:
            writes = await self._handler.handle(delivery)
        except DeadLetterError as exc:
            return exc, ()
        except Exception as exc:  # a failing handler never stops the consumer
            self._log.error("handler_failed", error=_describe(exc),
                            delivery_count=delivery.delivery_count, exc_info=exc)
            return exc, ()
        return None, writes or ()

    async def _retry_in_place(self, delivery: Delivery) -> Delivery | None:
        """Deliver the entry again to this consumer after a backoff, counted by Redis
        (XCLAIM without JUSTID); None if it is no longer ours."""
        delay_s = min(_RETRY_DELAY_MAX_S,
                      self.options.retry_delay_ms / 1000 * 2 ** (delivery.delivery_count - 1))
        self._log.info("entry_retry_scheduled", delay_s=delay_s)
        await self._clock.sleep(delay_s)

        if not await self._settle(partial(self._member.redeliver, delivery)):
            self._log.warning("entry_lost", reason="no longer pending for this consumer")
            return None
        return self._member.delivery(delivery.stream, delivery.entry_id, delivery.fields,
                                     delivery.delivery_count + 1)

    def _finish(self, work: _Work) -> None:
        d = work.delivery
        self._work.pop((d.stream, d.entry_id), None)
        if work.key is not None:
            queue = self._waiting.get(work.key)
            if queue and not self._forced:
                self._start(queue.popleft())
            elif not queue:
                self._waiting.pop(work.key, None)
        self._changed.set()

    # -- settling ------------------------------------------------------------------------

    async def _settle(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis write until it succeeds: the work is done, losing its outcome
        would run it again."""
        while True:
            try:
                async with redis_failures():
                    return await action()
            except RedisUnavailableError as exc:
                await self._clock.sleep(self._redis_backoff("settle", exc))

    async def _ack(self, delivery: Delivery, writes: Sequence[AckWrite]) -> None:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._acks.append((delivery, writes, done))
        if self._ack_flusher is None or self._ack_flusher.done():
            self._ack_flusher = asyncio.create_task(self._flush_acks(), name="consumer-acks")
        if await done:  # counted by the flusher, per batch
            self._log.debug("entry_acked", delivery_count=delivery.delivery_count)
            if self._on_settled is not None:
                self._on_settled(delivery, "acked")
        else:
            # Another consumer took it over (we missed heartbeats): it ran twice.
            self._log.warning("entry_already_settled", delivery_count=delivery.delivery_count)

    async def _flush_acks(self) -> None:
        """One round trip for every entry that finished meanwhile (under load, many)."""
        await asyncio.sleep(0)  # let the handlers finishing in this iteration join
        while self._acks:
            batch, self._acks = self._acks, []
            try:
                acked = await self._settle(partial(self._member.ack,
                                                   [(d, writes) for d, writes, _ in batch]))
            except Exception as exc:  # not a Redis outage (retried): the entries stay pending
                acked, failure = [], exc
            outcomes: dict[tuple[str, str], int] = defaultdict(int)
            for index, (delivery, _, done) in enumerate(batch):
                if index < len(acked):
                    outcomes[(delivery.stream, "acked" if acked[index] else "lost")] += 1
                if done.done():  # its task was cancelled (a forced stop)
                    continue
                if index < len(acked):
                    done.set_result(acked[index])
                else:
                    done.set_exception(failure)
            for (stream, outcome), count in outcomes.items():
                self._count(stream, outcome, count)

    async def _finish_acks(self) -> None:
        """Let the acknowledgements on their way land, even after a forced stop: they
        carry the records of finished work, which would otherwise run again. Bounded:
        with Redis down they would be retried forever."""
        flusher = self._ack_flusher
        if flusher is None or flusher.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(flusher), timeout=_ACK_FINISH_S)
        except TimeoutError:
            self._log.warning("acks_abandoned", waited_s=_ACK_FINISH_S)
            await cancel_and_wait(flusher)

    async def _dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        letter_id = await self._settle(
            lambda: self._member.dead_letter(delivery, failure, at_s=self._clock.time()))
        if letter_id is None:
            self._log.warning("entry_already_settled", delivery_count=delivery.delivery_count)
            return
        self._log.warning("entry_dead_lettered", stream=delivery.stream, entry_id=delivery.entry_id,
                          dead_letter_stream=self._member.dead_letter_stream(delivery.stream),
                          dead_letter_id=letter_id, reason=failure.reason,
                          attempts=failure.attempts, rule=failure.rule)
        self._count(delivery.stream, "dead_lettered")
        if self._on_settled is not None:
            self._on_settled(delivery, "dead_lettered")

    async def _record_error(self, delivery: Delivery, error: Exception) -> None:
        record = {"error": _describe(error), "errorType": type(error).__name__,
                  "attempts": delivery.delivery_count, "rule": getattr(error, "rule", None),
                  "step": getattr(error, "step", None)}
        try:
            await self._member.record_error(delivery, record)
        except _REDIS_DOWN as exc:
            self._log.warning("error_record_failed", error=str(exc))

    # -- heartbeat -----------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        interval_s = self.options.claim_idle_ms * CONSUMER_HEARTBEAT_FRACTION / 1000
        while True:
            await self._heartbeat()
            await self._clock.sleep(interval_s)

    async def _heartbeat(self) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for (stream, entry_id), work in list(self._work.items()):
            if not work.settling:
                by_stream[stream].append(entry_id)
        try:
            for stream, entry_ids in by_stream.items():
                for entry_id in await self._member.touch(stream, entry_ids, idle_ms=0):
                    current = self._work.get((stream, entry_id))
                    if current is None or current.settling:  # settled meanwhile, by us
                        continue
                    self._log.warning("entry_lost", stream=stream, entry_id=entry_id,
                                      reason="claimed by another consumer or acknowledged")
                    self._count(stream, "lost")
            await self._publish_heartbeat()
        except (*_REDIS_DOWN, redis_errors.RedisError) as exc:  # the next beat tries again
            self._log.warning("heartbeat_failed", error=str(exc))

    async def _claim_name(self) -> bool:
        """Wait while another live process uses this consumer name: two processes under
        one name would heartbeat, and so keep, each other's entries. False if stopped."""
        announced = False
        while not self._stopping:
            try:
                holder = await self._member.claim_name(self._beat(),
                                                       ttl_ms=self.options.claim_idle_ms)
            except _REDIS_DOWN as exc:
                await self._pause(self._redis_backoff("claim_name", exc))
                continue
            if holder is None:
                self._named = True
                return True
            if not announced:
                self._log.warning("consumer_name_in_use", holder_host=holder.get("host"),
                                  holder_pid=holder.get("pid"),
                                  hint="waiting for it to stop; give each process its name")
                announced = True
            await self._pause(self.options.claim_idle_ms * CONSUMER_HEARTBEAT_FRACTION / 1000)
        return False

    def _beat(self) -> dict[str, object]:
        return {
            "group": self.options.group, "consumer": self.options.consumer,
            "streams": list(self.options.streams), "host": socket.gethostname(),
            "pid": os.getpid(), "inFlight": len(self._work),
            "maxInFlight": self.options.max_in_flight, "startedAt": self.started_at_s,
            "heartbeatAt": self._clock.time(), "stopping": self._stopping,
        }

    async def _publish_heartbeat(self) -> None:
        """``fleet:consumers:{group}:{consumer}`` lives as long as this consumer's entries
        are protected from reclaim: operators and ``status`` see live consumers."""
        await self._member.publish_heartbeat(self._beat(), ttl_ms=self.options.claim_idle_ms)

    async def _forget_heartbeat(self) -> None:
        if not self._named:
            return
        try:
            await self._member.forget_heartbeat()
        except _REDIS_DOWN as exc:
            self._log.warning("heartbeat_delete_failed", error=str(exc))

    # -- stopping ------------------------------------------------------------------------

    async def _drain(self) -> None:
        if not self._work:
            return
        self._log.info("draining", in_flight=len(self._work))

        async def all_settled() -> None:
            while self._work and not self._forced:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(all_settled(), timeout=self.options.drain_timeout_s)
        except TimeoutError:
            self._log.warning("drain_timed_out", in_flight=len(self._work))
        self._abandon()
        tasks = [w.task for w in self._work.values() if w.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _abandon(self) -> None:
        self._forced = True
        self._changed.set()
        for work in list(self._work.values()):
            if work.task is not None:
                work.task.cancel()

    async def _release_leftovers(self) -> None:
        """Entries taken but not settled: make them idle past the visibility timeout,
        so other consumers take them over at once instead of waiting for it."""
        leftovers = self._abandoned + [w.delivery for w in self._work.values()]
        by_stream: dict[str, list[str]] = defaultdict(list)
        for delivery in leftovers:
            by_stream[delivery.stream].append(delivery.entry_id)
        try:
            for stream, entry_ids in by_stream.items():
                # Those acknowledged meanwhile (their work had finished) are not ours now.
                settled = set(await self._member.touch(stream, entry_ids,
                                                       idle_ms=self.options.claim_idle_ms))
                released = [entry_id for entry_id in entry_ids if entry_id not in settled]
                if released:
                    self._log.warning("entries_released", stream=stream, entry_ids=released)
        except _REDIS_DOWN as exc:
            self._log.warning("release_failed", error=str(exc))

    # -- helpers -------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early on stop."""
        self._changed.clear()
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=seconds)

    def _redis_backoff(self, where: str, exc: BaseException) -> float:
        self._redis_failures = min(self._redis_failures + 1, 16)  # shared by every task
        backoff_s = min(_REDIS_BACKOFF_MAX_S, 0.5 * 2.0 ** (self._redis_failures - 1))
        self._log.warning("redis_unavailable", where=where, error=str(exc), backoff_s=backoff_s)
        return backoff_s

    def _count(self, stream: str, outcome: str, count: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.count_settled(stream, self.options.group, outcome, count)

    def _publish_in_flight(self) -> None:
        if self._metrics is not None:
            self._metrics.set_in_flight(self.options.group, len(self._work))


def _enqueue_in_stream_order(queue: deque[_Work], work: _Work) -> None:
    """Append; a reclaimed entry goes before the newer entries of its key already here."""
    position = len(queue)
    while position and _id_order(queue[position - 1]) > _id_order(work):
        position -= 1
    queue.insert(position, work)


def _id_order(work: _Work) -> tuple[int, int]:
    milliseconds, _, sequence = work.delivery.entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
