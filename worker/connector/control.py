"""The operator controls a connector worker honours (the protocol is
:mod:`worker.ops.controls`): the durable pause flag, read before every poll, and the
``fleet:control`` announcements that wake the worker for a pause, a resume, a
restart or a poll now."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from framework.core import (
    CONTROL_CHANNEL,
    UNAVAILABLE,
    ChannelWatch,
    Clock,
    Logger,
    RedisUnavailableError,
    control_key,
    redis_failures,
)
from worker.ops import parse_announcement, record_last_error

# A broken subscription to the control channel is made again after this long.
_WATCH_RETRY_S = 1.0


class ConnectorControl:
    """``paused`` is the last flag read; a failed read keeps it (Redis down: the
    poll would fail anyway, and a paused connector must not start polling)."""

    def __init__(self, name: str, redis: Redis, *, clock: Clock, wake: Callable[[], None],
                 reload: Callable[[], None], restart: Callable[[], None]) -> None:
        """``restart`` marks the next ``reload`` as a rebuild, which it then requests."""
        self._name = name
        self._redis = redis
        self._clock = clock
        self._wake = wake
        self._restart = restart
        self._reload = reload
        self.paused = False
        self._poll_now = False

    async def check_paused(self, log: Logger) -> bool:
        """Read the flag (logged when it changes); whether the next poll is skipped."""
        try:
            async with redis_failures(self._name):
                paused = bool(await self._redis.hexists(control_key(self._name), "paused"))
        except (*UNAVAILABLE, RedisUnavailableError) as exc:
            log.warning("pause_flag_unreadable", error=str(exc), paused=self.paused)
            return self.paused
        if paused != self.paused:
            log.info("connector_paused" if paused else "connector_resumed")
        self.paused = paused
        return paused

    def take_poll_now(self) -> bool:
        """Whether a poll now was asked for since the last call."""
        asked, self._poll_now = self._poll_now, False
        return asked

    async def watch(self, log: Logger) -> None:
        """Follow the announcements until cancelled."""
        await ChannelWatch(self._redis, CONTROL_CHANNEL, self._announced, logger=log,
                           name="control_watch", retry_s=_WATCH_RETRY_S).run()

    def _announced(self, data: object) -> None:
        parsed = parse_announcement(data)
        if parsed is None or parsed[0] != self._name:
            return
        if parsed[1] == "restart":
            self._restart()
            self._reload()
            return
        if parsed[1] == "poll_now":
            self._poll_now = True
        self._wake()  # pause / resume: the flag is read again before the next poll

    async def record_error(self, error: str, error_type: str, log: Logger) -> None:
        """The last failed poll, for operators; best effort (the poll's outcome stands)."""
        try:
            await record_last_error(self._redis, self._name, error=error,
                                    error_type=error_type, at_s=self._clock.time())
        except Exception as exc:  # best effort: never fails the poll loop
            log.warning("last_error_write_failed", error=str(exc))
