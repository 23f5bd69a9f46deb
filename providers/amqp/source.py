"""The AMQP 0-9-1 push source (aio-pika): one consumer on one queue, manual
acknowledgement after the append.

The broker hands over at most ``prefetch`` unacknowledged messages. After a batch
is in the stream one ``basic.ack`` with ``multiple`` acknowledges it (batches are
taken in delivery order, so everything up to its last delivery tag is in the
stream). When a commit fails the connector stops the source: the channel is
closed, and the broker requeues every unacknowledged message (AMQP 0-9-1 4.7)
for the next start. A dropped connection (broker restart) is noticed at the next
``receive``, which connects again; deliveries of the old channel are not
acknowledged (their tags mean nothing on a new channel; the broker has requeued
them).

Redeliveries: a redelivered message is appended in a batch of its own, and on a
queue that does not count deliveries (classic) its deliveries are counted in Redis
(:mod:`providers.amqp.deliveries`), so that the connector's ``maxDeliveries`` bound
holds for both queue types. Each channel starts with a prefetch of 1, raised to
``prefetch`` once a message that was not redelivered is acknowledged: while a
poison message fails again and again, the messages behind it are not in flight
with it, so they are not returned with it (a quorum queue would count those
returns as deliveries, and set innocent messages aside).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from yarl import URL

from framework.core import Logger, TransientSourceError
from framework.polling import Batch
from providers.amqp.config import AmqpSourceConfig
from providers.amqp.deliveries import DeliveryCounts, isolate
from providers.broker_tls import client_tls_context
from providers.inbox import Inbox
from providers.reconnect import ReconnectBackoff

# How long a receive waits for more after the first message of a batch.
LINGER_S = 0.005


class AmqpConnectError(TransientSourceError):
    """The broker could not be reached, refused the login, or the queue is missing."""


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """One delivery. ``deliveries``: how often it has been delivered, when known
    (quorum queues' ``x-delivery-count``; for a redelivery on a classic queue, the
    count kept in Redis, under ``counted``), else None; ``channel``: which channel
    delivered it."""

    body: bytes
    message_id: str | None
    exchange: str
    routing_key: str
    redelivered: bool
    deliveries: int | None
    channel: int
    local_id: str
    incoming: AbstractIncomingMessage = field(repr=False, compare=False)
    counted: str | None = None


class AmqpSource:
    """A :class:`framework.polling.PushSource` over one AMQP queue."""

    def __init__(self, settings: AmqpSourceConfig, *, connect_timeout_s: float,
                 logger: Logger, counts: DeliveryCounts | None = None) -> None:
        self._settings = settings
        self._counts = counts
        self._careful = True
        self._queue: AbstractQueue | None = None
        self._consumer = ""
        self._timeout_s = connect_timeout_s
        self._log = logger
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._generation = 0
        self._inbox: Inbox[AmqpMessage] = Inbox(LINGER_S)
        self._backoff = ReconnectBackoff()
        # Local ids: one random prefix per source, then a counter (cheap per message).
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()

    async def start(self, positions: Mapping[str, str]) -> None:
        """Connect and consume; after failures in a row, pause first
        (:class:`ReconnectBackoff`)."""
        await self._backoff.pause()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._connect()
        except BaseException as exc:
            self._backoff.failed()
            await self.stop()
            if isinstance(exc, Exception):
                raise AmqpConnectError(self._describe(exc)) from None
            raise
        self._backoff.succeeded()

    async def _connect(self) -> None:
        settings = self._settings
        url = URL(settings.url)
        password = settings.read_password()
        if password is not None:
            url = url.with_password(password)
        self._connection = await aio_pika.connect(
            url, timeout=self._timeout_s,
            ssl_context=client_tls_context(settings.tls) if settings.uses_tls else None)
        channel = await self._connection.channel(publisher_confirms=False)
        self._channel = channel
        self._generation += 1
        await channel.set_qos(prefetch_count=1)  # raised by acknowledge: see the docstring
        self._careful = True
        if settings.declare:
            queue = await channel.declare_queue(
                settings.queue, durable=True, arguments={"x-queue-type": settings.queue_type})
            for binding in settings.bindings:
                await queue.bind(binding.exchange, binding.routing_key)
        else:
            queue = await channel.declare_queue(settings.queue, passive=True)
        self._queue = queue
        self._consumer = await queue.consume(
            functools.partial(self._on_message, self._generation), no_ack=False)
        self._log.info("amqp_consuming", broker=settings.host, queue=settings.queue,
                       prefetch=settings.prefetch)

    def _describe(self, exc: BaseException) -> str:
        """The failure, naming broker and queue, never the password."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in (self._settings.url_password, self._safe_password()):
            if secret:
                text = text.replace(secret, "***")
        return f"amqp broker {self._settings.host}, queue {self._settings.queue}: {text}"

    def _safe_password(self) -> str | None:
        try:
            return self._settings.read_password()
        except (OSError, ValueError):
            return None

    async def receive(self, max_messages: int, wait_s: float) -> Batch[AmqpMessage]:
        if self._channel is None or self._channel.is_closed:
            await self._reconnect()
        batch, later = isolate(await self._inbox.take(max_messages, wait_s))
        self._inbox.put_back(later)
        return Batch(await self._count(batch))

    async def _count(self, batch: list[AmqpMessage]) -> list[AmqpMessage]:
        """A redelivery the queue does not count is counted in Redis (a batch of one:
        :func:`isolate`)."""
        if self._counts is None or len(batch) != 1:
            return batch
        [message] = batch
        if not message.redelivered or message.deliveries is not None:
            return batch
        key = DeliveryCounts.field(message.message_id, message.exchange, message.routing_key,
                                   message.body)
        return [replace(message, deliveries=await self._counts.redelivered(key), counted=key)]

    async def _reconnect(self) -> None:
        self._log.warning("amqp_channel_closed", broker=self._settings.host,
                          requeued=len(self._inbox))
        await self.stop()
        await self.start({})

    async def acknowledge(self, batch: Batch[AmqpMessage]) -> None:
        ours = [m for m in batch.messages if m.channel == self._generation]
        if not ours or self._channel is None or self._channel.is_closed:
            return  # the broker requeued them with the channel: they come again
        try:
            await ours[-1].incoming.ack(multiple=True)
        except Exception as exc:  # the channel closed just now: requeued, as above
            self._log.warning("amqp_ack_failed", error=self._describe(exc))
            return
        await self._forget(ours)
        if self._careful and not ours[-1].redelivered:
            self._careful = False
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._consume_with_full_prefetch()
            except Exception as exc:  # the channel closed, or the broker stalls
                self._log.warning("amqp_prefetch_not_raised", error=self._describe(exc))
                # Perhaps cancelled and not consuming again: the next receive connects
                # anew (the broker requeues what is not acknowledged).
                self._channel = None

    async def _consume_with_full_prefetch(self) -> None:
        """A consumer keeps the prefetch it was created with (RabbitMQ), so the careful
        one is replaced. Deliveries sent before the broker's CancelOk still reach it
        (aiormq drops the consumer only then), and stay unacknowledged on the channel
        until their batch's ack, in delivery order, as before."""
        channel, queue = self._channel, self._queue
        if channel is None or queue is None:
            return
        await queue.cancel(self._consumer)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        self._consumer = await queue.consume(
            functools.partial(self._on_message, self._generation), no_ack=False)

    async def _forget(self, acked: Sequence[AmqpMessage]) -> None:
        counted = [message.counted for message in acked if message.counted]
        if self._counts is None or not counted:
            return
        try:
            await self._counts.forget(counted)
        except Exception as exc:  # a count left behind expires with its hash
            self._log.warning("amqp_delivery_count_not_removed", error=str(exc))

    async def stop(self) -> None:
        """Close the channel (the broker requeues what was not acknowledged)."""
        connection, self._connection, self._channel = self._connection, None, None
        self._queue = None
        self._generation += 1
        self._inbox.clear()
        if connection is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await connection.close()
        except Exception as exc:  # already gone: the broker requeues all the same
            self._log.info("amqp_close_failed", error=self._describe(exc))

    async def _on_message(self, generation: int, incoming: AbstractIncomingMessage) -> None:
        if generation != self._generation:
            return  # a closed channel's: requeued by the broker
        headers: Mapping[str, Any] = incoming.headers or {}
        count = headers.get("x-delivery-count")
        self._inbox.add(AmqpMessage(
            body=incoming.body, message_id=incoming.message_id or None,
            exchange=incoming.exchange or "", routing_key=incoming.routing_key or "",
            redelivered=bool(incoming.redelivered),
            deliveries=int(count) + 1 if isinstance(count, int) else None,
            channel=generation, local_id=f"{self._id_prefix}-{next(self._ids)}", incoming=incoming))
        self._inbox.wake()
