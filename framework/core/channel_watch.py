"""``ChannelWatch``: a Redis pub/sub subscription kept alive for a watcher.

Catalog changes (``catalog:changes``) and breaker openings
(``fleet:breakers:opened``) are announced on channels that other processes
follow: :meth:`ChannelWatch.run` calls ``on_message`` with each message's data
until cancelled. A broken subscription is made again after ``retry_s``;
``on_gap`` is called whenever messages may have been missed: on subscribing
(what was read before may be stale), when the subscription breaks, and when
redis-py reconnects and resubscribes on its own (what was published meanwhile
is lost). ``subscribed`` is set while the subscription holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.core.logs import Logger

__all__ = ["ChannelWatch"]


class ChannelWatch:
    def __init__(self, redis: Redis, channel: str, on_message: Callable[[object], None], *,
                 logger: Logger, name: str, retry_s: float,
                 on_gap: Callable[[], None] | None = None) -> None:
        """``name`` prefixes the log events (``{name}_lost``, ``{name}_reconnected``)."""
        self._redis = redis
        self._channel = channel
        self._on_message = on_message
        self._on_gap = on_gap
        self._log = logger
        self._lost_event = f"{name}_lost"
        self._reconnected_event = f"{name}_reconnected"
        self._retry_s = retry_s
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._log.warning(self._lost_event, error=str(exc), retry_in_s=self._retry_s)
            finally:
                self.subscribed.clear()
                self._gap()
            # Not an injected clock: this waits for the network, and a fake clock
            # that nobody advances would stop the watcher for good.
            await asyncio.sleep(self._retry_s)

    async def _follow(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        connection = None
        try:
            await pubsub.subscribe(self._channel)
            connection = pubsub.connection
            if connection is not None:  # kept as a weak reference to this method
                connection.register_connect_callback(self._reconnected)
            self._gap()
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._on_message(message.get("data"))
        finally:
            # The connection goes back to the pool: its next user's connect is not a
            # reconnect of this subscription.
            if connection is not None:
                connection.deregister_connect_callback(self._reconnected)
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    def _reconnected(self, connection: object) -> None:
        self._log.warning(self._reconnected_event)
        self._gap()

    def _gap(self) -> None:
        if self._on_gap is not None:
            self._on_gap()
