"""Lease renewals of the in-process fleet, on a thread of their own.

With hundreds of connectors on one event loop, a busy loop (polls bunching up, a slow
machine) delays every callback, and a renewal scheduled at TTL/3 could run after the
TTL: the lease expired although Redis was healthy. Here one thread renews every held
lease when due, all the due ones in one pipeline on its own connection, so renewals
wait neither for the event loop nor for the polls' connections. Python switches
threads every few milliseconds however busy the loop is.

A lease found gone or taken, or not renewed for a full TTL because Redis did not
answer, is reported back on the event loop (``on_lost``, with the log event to say),
where the worker stops polling and returns to standby as it does with its own keeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis as sync_redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from framework.core import LEASE_RENEW_FRACTION, Clock, Logger, create_sync_redis, lua
from framework.polling import Lease

# How often the thread looks for due renewals, and how soon it retries one that failed.
_TICK_S = 0.05
_RETRY_S = 0.25
# One pipeline's answer may take this long before the thread gives up on it.
_SOCKET_TIMEOUT_S = 2.0

LostCallback = Callable[[str], None]  # called on the event loop with the log event name


@dataclass
class _Kept:
    lease: Lease
    on_lost: LostCallback
    due_s: float  # monotonic
    renewed_s: float  # monotonic, the last successful renewal (or the acquisition)


class LeaseRenewals:
    """``start`` on the event loop, ``keep``/``drop`` each lease, ``close`` at the end."""

    def __init__(self, redis_url: str, *, clock: Clock, logger: Logger) -> None:
        self._client = create_sync_redis(
            redis_url, client_name="connector-fleet:lease-renewals",
            socket_timeout_s=_SOCKET_TIMEOUT_S)
        self._extend = self._client.register_script(lua("framework.polling", "lease_extend"))
        self._clock = clock
        self._log = logger
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewals", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def keep(self, lease: Lease, on_lost: LostCallback) -> None:
        """Renew ``lease`` (just acquired) every TTL/3 until dropped or lost."""
        now = self._clock.monotonic()
        with self._lock:
            self._kept[lease.token] = _Kept(lease, on_lost, now + _interval_s(lease), now)

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._kept.pop(lease.token, None)

    def close(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_SOCKET_TIMEOUT_S * 2)
        self._client.close()

    # -- the thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.wait(_TICK_S):
            now = self._clock.monotonic()
            with self._lock:
                due = [kept for kept in self._kept.values() if kept.due_s <= now]
            if due:
                self._renew(due, now)

    def _renew(self, due: list[_Kept], now: float) -> None:
        results: list[object]
        try:
            results = (self._extend_each(due) if isinstance(self._client, RedisCluster)
                       else self._extend_pipelined(due))
        except (sync_redis.RedisError, RedisClusterException, OSError) as exc:
            results = [exc] * len(due)
        for kept, result in zip(due, results, strict=True):
            self._settle(kept, result, now)

    def _extend_pipelined(self, due: list[_Kept]) -> list[object]:
        pipe = self._client.pipeline(transaction=False)
        for kept in due:
            self._extend(keys=[kept.lease.key],
                         args=[kept.lease.token, int(kept.lease.ttl_s * 1000)], client=pipe)
        return list(pipe.execute(raise_on_error=False))

    def _extend_each(self, due: list[_Kept]) -> list[object]:
        """A cluster client pipelines no script (each lease's key has its own slot, on
        its own node): one call per lease, each failure its own."""
        results: list[object] = []
        for kept in due:
            try:
                results.append(self._extend(keys=[kept.lease.key],
                                            args=[kept.lease.token,
                                                  int(kept.lease.ttl_s * 1000)]))
            except (sync_redis.RedisError, RedisClusterException, OSError) as exc:
                results.append(exc)
        return results

    def _settle(self, kept: _Kept, result: object, now: float) -> None:
        if isinstance(result, Exception):
            # We may still hold it: Redis keeps the key until its TTL runs out.
            if now - kept.renewed_s < kept.lease.ttl_s:
                kept.due_s = now + _RETRY_S
                self._on_loop(self._log.warning, "lease_renew_failed",
                              connector=kept.lease.name, error=str(result))
                return
            self._lost(kept, "lease_expired_while_redis_unavailable")
        elif result:
            kept.renewed_s = now
            kept.due_s = now + _interval_s(kept.lease)
        else:
            self._lost(kept, "lease_lost")

    def _lost(self, kept: _Kept, event: str) -> None:
        self.drop(kept.lease)
        self._on_loop(kept.on_lost, event)

    def _on_loop(self, callback: Callable[..., object], *args: object, **kwargs: object) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: nobody to tell
            self._loop.call_soon_threadsafe(lambda: callback(*args, **kwargs))


def _interval_s(lease: Lease) -> float:
    return lease.ttl_s * LEASE_RENEW_FRACTION
