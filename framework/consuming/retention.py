"""``StreamRetention``: trims from a stream the entries every consumer group has
acknowledged, plus a length cap, and counts what went.

Consumed entries stay in their stream until trimmed; the publishers' ``MAXLEN ~``
only bounds the count. A consumer process calls :meth:`StreamRetention.run` for its
streams (every ``interval_s``); ``connector-fleet streams trim`` calls
:meth:`StreamRetention.trim` once. One Lua script (``stream_trim.lua``) reads every
group's oldest pending entry and last-delivered id and trims below the minimum, so an
entry some group has not acknowledged (or not yet read) is never removed by it. The
cap (``max_len``, exact; 0: none) is the memory bound of last resort: it removes the
oldest entries whatever their state, and says so (a warning and its own metric reason).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry, Counter
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core.clock import Clock
from framework.core.errors import RedisUnavailableError
from framework.core.logs import Logger
from framework.core.scripts import lua

__all__ = ["RetentionMetrics", "StreamRetention", "Trimmed"]


@dataclass(frozen=True)
class Trimmed:
    """What one trim of one stream removed."""

    stream: str
    acknowledged: int  # entries every group had acknowledged
    capped: int  # entries over the length cap (acknowledged or not)
    min_id: str | None  # the MINID used; None when the stream has no group


@dataclass(frozen=True)
class RetentionMetrics:
    trimmed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RetentionMetrics:
        return cls(
            trimmed=Counter(
                "stream_trimmed_entries",
                "Stream entries trimmed by the retention policy, by "
                "reason (acknowledged: by every group; max_len: over the cap).",
                ["stream", "reason"],
                registry=registry,
            )
        )


class StreamRetention:
    def __init__(
        self, redis: Redis, *, max_len: int, logger: Logger, metrics: RetentionMetrics | None = None
    ) -> None:
        if max_len < 0:
            raise ValueError(f"stream retention: max_len must be >= 0 (0: no cap), got {max_len}")
        self._max_len = max_len
        self._log = logger
        self._metrics = metrics
        self._script = redis.register_script(lua("framework.consuming", "stream_trim"))

    async def trim(self, stream: str) -> Trimmed:
        """Trim ``stream`` once (a missing stream: nothing to trim)."""
        try:
            reply = cast(list[int | str], await self._script(keys=[stream], args=[self._max_len]))
        except redis_errors.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            return Trimmed(stream, 0, 0, None)
        acknowledged, capped, min_id = int(reply[0]), int(reply[1]), str(reply[2])
        trimmed = Trimmed(stream, acknowledged, capped, min_id or None)
        self._observe(trimmed)
        return trimmed

    async def run(self, streams: Sequence[str], *, interval_s: float, clock: Clock) -> None:
        """Trim every stream every ``interval_s`` until cancelled; a failed trim is
        logged and the next round tries again (one stream's failure spares the others)."""
        while True:
            # First after one interval: a process that starts trims nothing it just met.
            await clock.sleep(interval_s)
            for stream in streams:
                try:
                    await self.trim(stream)
                except (RedisUnavailableError, redis_errors.RedisError) as exc:
                    _reraise_cancellation(exc)
                    self._log.warning("stream_trim_failed", stream=stream, error=str(exc))

    def _observe(self, trimmed: Trimmed) -> None:
        if trimmed.capped:
            self._log.warning(
                "stream_capped",
                stream=trimmed.stream,
                removed=trimmed.capped,
                max_len=self._max_len,
            )
        if trimmed.acknowledged:
            self._log.debug(
                "stream_trimmed",
                stream=trimmed.stream,
                removed=trimmed.acknowledged,
                min_id=trimmed.min_id,
            )
        if self._metrics is not None:
            for reason, count in (
                ("acknowledged", trimmed.acknowledged),
                ("max_len", trimmed.capped),
            ):
                if count:
                    self._metrics.trimmed.labels(trimmed.stream, reason).inc(count)


def _reraise_cancellation(exc: BaseException) -> None:
    """A cancellation that reached a Redis call may come out as a Redis error (redis-py
    turns it into one on some paths): the task was asked to stop, so it stops."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
