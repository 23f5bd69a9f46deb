"""``ConsumerContext``: what the sections of one consumer share (its options, its
group commands, clock, logger and metrics), and how they wait out a Redis outage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from framework.consuming.delivery import Delivery
from framework.consuming.group import GroupMember
from framework.consuming.metrics import ConsumerMetrics
from framework.consuming.options import ConsumerOptions
from framework.core.clock import Clock
from framework.core.connections import UNAVAILABLE, redis_failures
from framework.core.errors import RedisUnavailableError
from framework.core.logs import Logger

T = TypeVar("T")
_REDIS_BACKOFF_MAX_S = 30.0
_REDIS_FAILURES_MAX = 16
REDIS_DOWN = (*UNAVAILABLE, RedisUnavailableError)


class RedisBackoff:
    """Growing pauses while Redis is unavailable, counted across every task of one
    consumer: many tasks failing at once back off as one."""

    def __init__(self, log: Logger) -> None:
        self._log = log
        self._failures = 0

    def next_pause_s(self, where: str, exc: BaseException) -> float:
        self._failures = min(self._failures + 1, _REDIS_FAILURES_MAX)
        backoff_s = min(_REDIS_BACKOFF_MAX_S, 0.5 * 2.0 ** (self._failures - 1))
        self._log.warning("redis_unavailable", where=where, error=str(exc), backoff_s=backoff_s)
        return backoff_s

    def reset(self) -> None:
        self._failures = 0


@dataclass(frozen=True)
class ConsumerContext:
    options: ConsumerOptions
    member: GroupMember
    clock: Clock
    log: Logger
    metrics: ConsumerMetrics | None
    backoff: RedisBackoff

    async def settle(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis write until it succeeds: the work is done, losing its outcome
        would run it again."""
        while True:
            try:
                async with redis_failures():
                    return await action()
            except RedisUnavailableError as exc:
                await self.clock.sleep(self.backoff.next_pause_s("settle", exc))

    def count(self, stream: str, outcome: str, count: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.count_settled(stream, self.options.group, outcome, count)

    def publish_in_flight(self, in_flight: int) -> None:
        if self.metrics is not None:
            self.metrics.set_in_flight(self.options.group, in_flight)


def entry_fields(delivery: Delivery) -> dict[str, str]:
    """The entry's context in a log line: passed when something is logged, not bound
    per entry (a context per entry cost more than the work of a quick one)."""
    return {"stream": delivery.stream, "entry_id": delivery.entry_id}


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
