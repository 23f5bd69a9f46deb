"""Circuit breakers: stop calling a capability (or one target host) that keeps failing.

A breaker is ``closed`` (calls go through) until ``failure_threshold`` failures
happen within ``window_s`` (by default 5 a minute); it is then ``open``: calls
fail fast with :class:`~framework.core.errors.CircuitOpenError` without reaching the
target. After ``cooldown_s`` it is ``half_open``: one probe call goes through;
its success closes the breaker, its failure opens it again.

Breakers live in the process (deciding must not cost a Redis round trip), one
per key (``http_call@api.example.org``) on a :class:`BreakerBoard`. Every
change of state is written to the Redis hash ``fleet:breakers`` (field
``{breaker}|{owner}``, value JSON) so ``status`` and other processes can show
it, and to the Prometheus gauge ``connector_breaker_state`` (0 closed, 1
half-open, 2 open).

An open breaker is shared: a breaker that its own failures opened is announced
on ``fleet:breakers:opened``, and every board running :meth:`BreakerBoard.watch`
opens its breaker of that key too, until the announcing one half-opens; then
each probes the target for itself. So a failing target costs the fleet about
``failure_threshold`` calls, not that many per process.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from framework.core.channel_watch import ChannelWatch
from framework.core.clock import Clock, iso_utc
from framework.core.keys import BREAKERS_KEY, BREAKERS_OPENED_CHANNEL, BREAKERS_WATCH_RETRY_S
from framework.core.logs import Logger


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


_GAUGE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0


@dataclass
class CircuitBreaker:
    """One breaker's state machine, on monotonic seconds given by the caller."""

    key: str
    policy: BreakerPolicy
    state: BreakerState = BreakerState.CLOSED
    opened_at_s: float = 0.0
    _failures_at_s: deque[float] = field(default_factory=deque)
    _probe_started_at_s: float | None = None

    @property
    def failures(self) -> int:
        return len(self._failures_at_s)

    def refusal_s(self, now_s: float) -> float | None:
        """None if a call may go through now, else seconds until one may."""
        if self.state is BreakerState.OPEN:
            reopen_at_s = self.opened_at_s + self.policy.cooldown_s
            if now_s < reopen_at_s:
                return reopen_at_s - now_s
            self.state = BreakerState.HALF_OPEN
            self._probe_started_at_s = None
        if self.state is BreakerState.HALF_OPEN:
            # One probe at a time; a probe that never reported (cancelled) stops
            # blocking the others after a cool-down.
            probe = self._probe_started_at_s
            if probe is not None and now_s < probe + self.policy.cooldown_s:
                return probe + self.policy.cooldown_s - now_s
            self._probe_started_at_s = now_s
        return None

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self._failures_at_s.clear()
        self._probe_started_at_s = None

    def record_failure(self, now_s: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open(now_s)
            return
        self._failures_at_s.append(now_s)
        while self._failures_at_s and self._failures_at_s[0] <= now_s - self.policy.window_s:
            self._failures_at_s.popleft()
        if self.state is BreakerState.CLOSED and self.failures >= self.policy.failure_threshold:
            self._open(now_s)

    def _open(self, now_s: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at_s = now_s
        self._probe_started_at_s = None

    def open_until(self, until_s: float) -> None:
        """Open (if closed) until ``until_s``: another process's breaker opened."""
        if self.state is BreakerState.CLOSED:
            self._open(until_s - self.policy.cooldown_s)


def breaker_state_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge("connector_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                 ["breaker"], registry=registry)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class BreakerBoard:
    """The breakers of one process, publishing their state changes."""

    def __init__(
        self,
        *,
        clock: Clock,
        logger: Logger,
        redis: Redis | None = None,
        owner: str | None = None,
        gauge: Gauge | None = None,
    ) -> None:
        """One per process, shared by all its executors. ``redis`` None: states are not
        published; ``owner``: this process in the published states (host:pid);
        ``gauge``: ``connector_breaker_state{breaker}`` (:func:`breaker_state_gauge`)."""
        self._redis = redis
        self._clock = clock
        self.owner = owner or default_owner()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._logger = logger
        self._gauge = gauge
        # Breakers other processes opened, by key: open here too until then (monotonic).
        self._opened_elsewhere: dict[str, float] = {}
        self._announcements: ChannelWatch | None = None

    def breaker(self, key: str, policy: BreakerPolicy) -> CircuitBreaker:
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = CircuitBreaker(key, policy)
        return found

    def state(self, key: str) -> BreakerState:
        found = self._breakers.get(key)
        return found.state if found else BreakerState.CLOSED

    async def refusal_s(self, key: str, policy: BreakerPolicy) -> float | None:
        """None if a call may go through, else seconds until the breaker half-opens."""
        breaker = self.breaker(key, policy)
        before = breaker.state
        now_s = self._clock.monotonic()
        if self._opened_elsewhere:  # every call asks: nothing to do in the common case
            until_s = self._opened_elsewhere.pop(key, None)
            if until_s is not None and until_s > now_s:
                breaker.open_until(until_s)
        refusal = breaker.refusal_s(now_s)
        if breaker.state is not before:  # no coroutine when nothing changed
            await self._published(breaker, before)
        return refusal

    async def record_success(self, key: str, policy: BreakerPolicy) -> None:
        breaker = self.breaker(key, policy)
        before = breaker.state
        breaker.record_success()
        if breaker.state is not before:
            await self._published(breaker, before)

    async def record_failure(self, key: str, policy: BreakerPolicy) -> None:
        breaker = self.breaker(key, policy)
        before = breaker.state
        breaker.record_failure(self._clock.monotonic())
        if breaker.state is not before:
            await self._published(breaker, before)
            if breaker.state is BreakerState.OPEN:  # by failures seen here: say so
                await self._announce_open(breaker)

    async def watch(self) -> None:
        """Open the breakers other processes announce; runs until cancelled. A broken
        subscription is retried (announcements meanwhile are missed: each process
        then opens on its own failures, as without a watcher)."""
        await self._announcements_watch().run()

    @property
    def watching(self) -> asyncio.Event:
        """Set while :meth:`watch` is subscribed (tests wait on it)."""
        return self._announcements_watch().subscribed

    def _announcements_watch(self) -> ChannelWatch:
        if self._redis is None:
            raise ValueError("BreakerBoard.watch needs a Redis client")
        if self._announcements is None:
            self._announcements = ChannelWatch(
                self._redis, BREAKERS_OPENED_CHANNEL, self._opened_by_another,
                logger=self._logger, name="breaker_watch", retry_s=BREAKERS_WATCH_RETRY_S)
        return self._announcements

    def _opened_by_another(self, data: object) -> None:
        try:
            announced = orjson.loads(data)  # type: ignore[arg-type]  # checked below
            key, owner = str(announced["breaker"]), str(announced["owner"])
            retry_in_s = float(announced["retryInS"])
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            self._logger.warning("breaker_announcement_ignored", error=str(exc))
            return
        if owner == self.owner:
            return
        self._opened_elsewhere[key] = self._clock.monotonic() + retry_in_s
        self._logger.info("breaker_opened_elsewhere", breaker=key, owner=owner,
                          retry_in_s=retry_in_s)

    async def _announce_open(self, breaker: CircuitBreaker) -> None:
        if self._redis is None:
            return
        announcement = {"breaker": breaker.key, "owner": self.owner,
                        "retryInS": breaker.policy.cooldown_s}
        try:
            await self._redis.publish(BREAKERS_OPENED_CHANNEL, orjson.dumps(announcement))
        except RedisError as exc:  # the others will open on their own failures
            self._logger.warning("breaker_opening_not_announced", breaker=breaker.key,
                                 error=str(exc))

    async def _published(self, breaker: CircuitBreaker, before: BreakerState) -> None:
        self._logger.warning(
            "breaker_state_changed", breaker=breaker.key, state=str(breaker.state),
            previous=str(before), failures=breaker.failures,
        )
        if self._gauge is not None:
            self._gauge.labels(breaker=breaker.key).set(_GAUGE_VALUES[breaker.state])
        if self._redis is None:
            return
        record = {
            "breaker": breaker.key,
            "owner": self.owner,
            "state": str(breaker.state),
            "failures": breaker.failures,
            "updatedAt": iso_utc(self._clock.time()),
        }
        try:
            await self._redis.hset(
                BREAKERS_KEY, f"{breaker.key}|{self.owner}", orjson.dumps(record).decode()
            )
        except RedisError as exc:
            # Visibility only: a breaker keeps protecting the target without Redis.
            self._logger.warning("breaker_state_not_published", breaker=breaker.key,
                                 error=str(exc))


async def read_breakers(redis: Redis) -> list[dict[str, Any]]:
    """Every published breaker state (one per breaker and process), sorted by breaker."""
    fields = await redis.hgetall(BREAKERS_KEY)
    records = [orjson.loads(value) for value in fields.values()]
    return sorted(records, key=lambda record: (record["breaker"], record["owner"]))
