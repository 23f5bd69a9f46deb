"""``Consumer``: the run of one stream consumer and the handling of each entry it takes.

Its sections: :mod:`.reading` takes entries, :mod:`.workers` runs them,
:mod:`.settling` writes their outcome, :mod:`.heartbeat` keeps them ours,
:mod:`.draining` ends the run; :mod:`.in_flight` holds what they share about the
entries held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial

from redis.asyncio import Redis

from framework.consuming.consumer.context import (
    ConsumerContext,
    RedisBackoff,
    describe_error,
    entry_fields,
)
from framework.consuming.consumer.draining import drain, release_leftovers
from framework.consuming.consumer.heartbeat import Heartbeat
from framework.consuming.consumer.in_flight import InFlight, Work
from framework.consuming.consumer.reading import Reader
from framework.consuming.consumer.settling import OnSettled, Settler
from framework.consuming.consumer.workers import Workers
from framework.consuming.dead_letters import Failure
from framework.consuming.delivery import AckWrite, Delivery, EventHandler
from framework.consuming.group import GroupMember
from framework.consuming.metrics import ConsumerMetrics
from framework.consuming.options import ConsumerOptions, order_key
from framework.core.cancellation import cancel_and_wait
from framework.core.clock import Clock
from framework.core.connections import grow_pool
from framework.core.errors import DeadLetterError, RetryLaterError
from framework.core.logs import Logger

_RETRY_DELAY_MAX_S = 30.0
_POOL_HEADROOM = 16


class Consumer:
    def __init__(self, redis: Redis, handler: EventHandler, options: ConsumerOptions, *,
                 clock: Clock, logger: Logger, metrics: ConsumerMetrics | None = None,
                 on_settled: OnSettled | None = None) -> None:
        """``on_settled(delivery, outcome)``: called once an entry is acknowledged
        (``acked``) or dead-lettered (``dead_lettered``), e.g. to time its completion."""
        self.options = options
        self._handler = handler
        self._log = log = logger.bind(group=options.group, consumer=options.consumer)
        # Each entry in flight may have a command of its handler waiting at once, besides
        # the consumer's own read, heartbeat and acknowledgements: never MaxConnectionsError.
        grow_pool(redis, options.max_in_flight + _POOL_HEADROOM)
        member = GroupMember(
            redis, group=options.group, consumer=options.consumer,
            dead_letter_streams={s: options.dead_letter_stream_of(s) for s in options.streams})
        self._ctx = ConsumerContext(options, member, clock, log, metrics, RedisBackoff(log))
        self._in_flight = InFlight(options.max_in_flight)
        self._settler = Settler(self._ctx, on_settled)
        self._workers = Workers(self._process, size=options.max_in_flight,
                                stopped=lambda: self._in_flight.forced)
        self.started_at_s = clock.time()
        self._heartbeat = Heartbeat(self._ctx, self._in_flight, started_at_s=self.started_at_s)
        self._reader = Reader(self._ctx, self._in_flight, self._settler,
                              dispatch=self._dispatch, stop=self.stop)
        self.stopped_by_force = False  # a second stop() cancelled the work in flight

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stop(self) -> None:
        """First call: stop reading and drain (bounded). Second: cancel the work now."""
        if self._in_flight.stopping:
            self._log.warning("stop_forced", in_flight=self.in_flight)
            self.stopped_by_force = True
            self._in_flight.abandon()
            return
        self._in_flight.request_stop()
        self._log.info("stop_requested", in_flight=self.in_flight,
                       drain_timeout_s=self.options.drain_timeout_s)

    async def run(self) -> None:
        """Read and handle entries until stopped; then drain and release what is left."""
        if not await self._heartbeat.claim_name():
            return
        await self._reader.ensure_groups()
        heartbeat = asyncio.create_task(self._heartbeat.keep_alive(), name="consumer-heartbeat")
        self._log.info("consumer_started", streams=list(self.options.streams),
                       max_in_flight=self.options.max_in_flight,
                       claim_idle_ms=self.options.claim_idle_ms,
                       max_deliveries=self.options.max_deliveries, order_by=self.options.order_by,
                       start_id=self.options.start_id)
        try:
            await self._reader.read_until_stopped()
            await drain(self._ctx, self._in_flight)
        finally:
            await cancel_and_wait(heartbeat)
            await self._workers.close()
            await self._settler.finish_acks()
            await release_leftovers(self._ctx, self._in_flight)
            self._ctx.publish_in_flight(len(self._in_flight))
            await self._heartbeat.forget()
            self._log.info("consumer_stopped")

    # -- handling ------------------------------------------------------------------------

    def _dispatch(self, stream: str, entry_id: str, fields: Mapping[str, str],
                  delivery_count: int) -> Delivery:
        delivery = self._ctx.member.delivery(stream, entry_id, fields, delivery_count)
        key = order_key(fields, self.options.order_by) if self.options.order_by else None
        work = Work(delivery, key)
        if self._in_flight.hold(work):
            self._start(work)
        return delivery

    def _start(self, work: Work) -> None:
        self._workers.submit(work)

    async def _process(self, work: Work) -> None:
        ack_queued = False
        try:
            ack_queued = await self._run_until_settled(work)
        except asyncio.CancelledError:
            self._in_flight.mark_abandoned(work.delivery)
            raise
        except Exception as exc:  # settling failed beyond an outage: it stays pending
            self._settle_failed(work, exc)
        finally:
            if not ack_queued:
                self._release(work)

    def _release(self, work: Work) -> None:
        following = self._in_flight.release(work)
        if following is not None:
            self._start(following)

    def _settle_failed(self, work: Work, exc: Exception) -> None:
        self._log.error("entry_settle_failed", **entry_fields(work.delivery),
                        error=describe_error(exc), exc_info=exc)

    def _acked(self, work: Work, error: Exception | None) -> None:
        """Its XACK is written (or failed): the entry's slot is free."""
        if error is not None:
            self._settle_failed(work, error)
        self._release(work)

    async def _run_until_settled(self, work: Work) -> bool:
        """True if its acknowledgement is queued (the slot is freed once it is written)."""
        while True:
            delivery = work.delivery
            error, writes = await self._call_handler(delivery)
            work.settling = True
            if error is None:
                self._settler.ack_soon(delivery, writes, partial(self._acked, work))
                return True
            failure = self._final_failure(delivery, error)
            if failure is not None:
                await self._settler.dead_letter(delivery, failure)
                return False
            work.settling = False
            await self._settler.record_error(delivery, error)
            self._ctx.count(delivery.stream, "failed")
            if work.key is None:
                # Stays pending: redelivered after the call's backoff without holding a
                # slot meanwhile, else reclaimed after claim_idle_ms, by us or another.
                self._reschedule(delivery, error)
                return False
            redelivered = await self._retry_in_place(delivery)
            if redelivered is None:
                return False
            work.delivery = redelivered

    def _final_failure(self, delivery: Delivery, error: Exception) -> Failure | None:
        """The dead letter's failure if ``error`` ends the entry; None if it may retry."""
        if isinstance(error, DeadLetterError):
            return Failure(reason=error.reason, error_type=type(error).__name__,
                           attempts=error.attempts or delivery.delivery_count,
                           rule=error.rule, step=error.step)
        if delivery.delivery_count >= self.options.max_deliveries:
            return Failure(
                reason=f"failed {delivery.delivery_count} times (max_deliveries "
                       f"{self.options.max_deliveries}); last error: {describe_error(error)}",
                error_type=type(error).__name__, attempts=delivery.delivery_count)
        return None

    async def _call_handler(self, delivery: Delivery
                            ) -> tuple[Exception | None, Sequence[AckWrite]]:
        """The handler's error, or None and what to write with the acknowledgement."""
        try:
            writes = await self._handler.handle(delivery)
        except DeadLetterError as exc:
            return exc, ()
        except Exception as exc:  # a failing handler never stops the consumer
            self._log.error("handler_failed", **entry_fields(delivery), error=describe_error(exc),
                            delivery_count=delivery.delivery_count, exc_info=exc)
            return exc, ()
        return None, writes or ()

    def _reschedule(self, delivery: Delivery, error: Exception) -> None:
        retry_in_s = _retry_in_s(error)
        if retry_in_s is None:
            return
        # The call's first backoff, doubled per delivery (as its own retries would).
        delay_s = min(_RETRY_DELAY_MAX_S, retry_in_s * 2 ** (delivery.delivery_count - 1))
        self._log.info("entry_retry_scheduled", **entry_fields(delivery), delay_s=delay_s,
                       delivery_count=delivery.delivery_count)
        self._in_flight.delay(delivery, self._ctx.clock.monotonic() + delay_s)

    async def _retry_in_place(self, delivery: Delivery) -> Delivery | None:
        """Deliver the entry again to this consumer after a backoff, counted by Redis
        (XCLAIM without JUSTID); None if it is no longer ours."""
        delay_s = min(_RETRY_DELAY_MAX_S,
                      self.options.retry_delay_ms / 1000 * 2 ** (delivery.delivery_count - 1))
        self._log.info("entry_retry_scheduled", **entry_fields(delivery), delay_s=delay_s)
        await self._ctx.clock.sleep(delay_s)

        member = self._ctx.member
        if not await self._ctx.settle(partial(member.redeliver, delivery)):
            self._log.warning("entry_lost", **entry_fields(delivery),
                              reason="no longer pending for this consumer")
            return None
        return member.delivery(delivery.stream, delivery.entry_id, delivery.fields,
                               delivery.delivery_count + 1)


def _retry_in_s(error: BaseException) -> float | None:
    """The backoff a failed call asked for (:class:`RetryLaterError`, or what caused
    ``error``); None if it did not."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, RetryLaterError):
            return seen.retry_in_s
        seen = seen.__cause__ or seen.__context__
    return None
