"""The durable schedule of irrigation closes: a Redis sorted set of zone id -> due
time (ms, Redis clock), shared by every consumer (``lua/close_*.lua``).

An open is scheduled *before* the valve is opened, so no crash leaves a valve open
without its close. Sweepers claim due closes atomically under a lease; a claimer
that dies leaves the close due again when its lease ends, for another to claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from framework.core import lua

CLOSES_KEY = "plant:{irrigation}:closes"
_STEP_PREFIX = "plant:{irrigation}:step:"
# A redelivery comes within hours; the marker outlives the longest open by a day.
_MARKER_MARGIN_MS = 86_400_000


@dataclass(frozen=True)
class Scheduled:
    fresh: bool  # False: this step had scheduled it before (a redelivery)
    due_ms: int
    now_ms: int
    # The zone's due close now (another open may have moved it); None if done.
    zone_due_ms: int | None

    @property
    def still_pending(self) -> bool:
        """The step's close has not run yet and no later open replaced it."""
        return self.zone_due_ms == self.due_ms and self.now_ms < self.due_ms


@dataclass(frozen=True)
class Claim:
    zone_id: str
    due_ms: int
    lease_ms: int


class CloseSchedule:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._schedule = redis.register_script(lua("providers.plant", "close_schedule"))
        self._claim = redis.register_script(lua("providers.plant", "close_claim"))
        self._done = redis.register_script(lua("providers.plant", "close_done"))

    async def schedule(self, zone_id: str, duration_ms: int, step_key: str) -> Scheduled:
        fresh, due, now, zone_due = await self._schedule(
            keys=[CLOSES_KEY, _STEP_PREFIX + step_key],
            args=[zone_id, duration_ms, duration_ms + _MARKER_MARGIN_MS])
        return Scheduled(bool(fresh), int(due), int(now),
                         None if int(zone_due) < 0 else int(zone_due))

    async def claim_due(self, *, lease_ms: int, limit: int = 100) -> list[Claim]:
        flat = await self._claim(keys=[CLOSES_KEY], args=[lease_ms, limit])
        return [Claim(_text(flat[i]), int(float(flat[i + 1])), int(float(flat[i + 2])))
                for i in range(0, len(flat), 3)]

    async def done(self, claim: Claim) -> bool:
        return bool(await self._done(keys=[CLOSES_KEY], args=[claim.zone_id, claim.lease_ms]))

    async def cancel(self, zone_id: str) -> None:
        """The zone was closed on command: nothing left to close."""
        await self._redis.zrem(CLOSES_KEY, zone_id)

    async def due_ms(self, zone_id: str) -> int | None:
        score = await self._redis.zscore(CLOSES_KEY, zone_id)
        return None if score is None else int(score)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
