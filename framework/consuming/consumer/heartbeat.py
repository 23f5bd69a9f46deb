"""``Heartbeat``: keeps a consumer's entries from being reclaimed while it works on
them, and publishes ``fleet:consumers:{group}:{consumer}`` for operators.

Every ``claim_idle_ms`` * ``CONSUMER_HEARTBEAT_FRACTION``: XCLAIM ... JUSTID of the
entries still held, only if still ours (``consumer_touch.lua``), so XAUTOCLAIM never
steals them. One process holds a consumer name at a time: two processes under one
name would heartbeat, and so keep, each other's entries.
"""

from __future__ import annotations

import os
import socket

from redis import exceptions as redis_errors

from framework.consuming.consumer.context import REDIS_DOWN, ConsumerContext
from framework.consuming.consumer.in_flight import InFlight
from framework.core.keys import CONSUMER_HEARTBEAT_FRACTION


class Heartbeat:
    def __init__(self, ctx: ConsumerContext, in_flight: InFlight, *, started_at_s: float) -> None:
        self._ctx = ctx
        self._options = ctx.options
        self._log = ctx.log
        self._in_flight = in_flight
        self._started_at_s = started_at_s
        self._named = False  # this process holds the consumer name (its heartbeat key)
        self._interval_s = ctx.options.claim_idle_ms * CONSUMER_HEARTBEAT_FRACTION / 1000

    async def claim_name(self) -> bool:
        """Wait while another live process uses this consumer name. False if stopped."""
        announced = False
        while not self._in_flight.stopping:
            try:
                holder = await self._ctx.member.claim_name(self._beat(),
                                                           ttl_ms=self._options.claim_idle_ms)
            except REDIS_DOWN as exc:
                await self._in_flight.pause(self._ctx.backoff.next_pause_s("claim_name", exc))
                continue
            if holder is None:
                self._named = True
                return True
            if not announced:
                self._log.warning("consumer_name_in_use", holder_host=holder.get("host"),
                                  holder_pid=holder.get("pid"),
                                  hint="waiting for it to stop; give each process its name")
                announced = True
            await self._in_flight.pause(self._interval_s)
        return False

    async def keep_alive(self) -> None:
        while True:
            await self.beat()
            await self._ctx.clock.sleep(self._interval_s)

    async def beat(self) -> None:
        """Touch the entries held; count those another consumer took; publish the beat."""
        try:
            for stream, entry_ids in self._in_flight.unsettled_by_stream().items():
                for entry_id in await self._ctx.member.touch(stream, entry_ids, idle_ms=0):
                    if not self._in_flight.is_unsettled(stream, entry_id):
                        continue  # settled meanwhile, by us
                    self._log.warning("entry_lost", stream=stream, entry_id=entry_id,
                                      reason="claimed by another consumer or acknowledged")
                    self._ctx.count(stream, "lost")
            await self._publish()
        except (*REDIS_DOWN, redis_errors.RedisError) as exc:  # the next beat tries again
            self._log.warning("heartbeat_failed", error=str(exc))

    def _beat(self) -> dict[str, object]:
        options = self._options
        return {
            "group": options.group, "consumer": options.consumer,
            "streams": list(options.streams), "host": socket.gethostname(),
            "pid": os.getpid(), "inFlight": len(self._in_flight),
            "maxInFlight": options.max_in_flight, "startedAt": self._started_at_s,
            "heartbeatAt": self._ctx.clock.time(), "stopping": self._in_flight.stopping,
        }

    async def _publish(self) -> None:
        """The key lives as long as this consumer's entries are protected from reclaim:
        operators and ``status`` see live consumers."""
        await self._ctx.member.publish_heartbeat(self._beat(), ttl_ms=self._options.claim_idle_ms)

    async def forget(self) -> None:
        if not self._named:
            return
        try:
            await self._ctx.member.forget_heartbeat()
        except REDIS_DOWN as exc:
            self._log.warning("heartbeat_delete_failed", error=str(exc))
