"""A rollout's state in Redis, so that whoever drives it next (after a crash or a
restart) picks it up where it was.

Keys (one hash tag per rollout, so one Cluster slot)::

    fleet:ota:rollouts              zset  rollout id -> created (epoch ms)
    fleet:ota:{ID}:state            hash  plan (JSON), stage, counters, soak end, events start
    fleet:ota:{ID}:order            list  the device ids, canary first (fixed at creation)
    fleet:ota:{ID}:devices          hash  device id -> updating | updated | failed |
                                          rolled_back | rollback_failed (absent: pending)
    fleet:ota:{ID}:previous         hash  device id -> the version it ran before
    fleet:ota:{ID}:lease            string  the driving process's token (PX ttl)

A device is marked ``updating`` before its update is sent (write-ahead): after a
crash, those are asked again, and the capability, which checks the device's
version first, does not install the firmware twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from providers.devices.ota.plan import RolloutPlan

PREFIX = "fleet:ota"
ROLLOUTS_KEY = f"{PREFIX}:rollouts"
STAGES = ("canary", "soak", "waves", "done", "rolling_back", "rolled_back")
FINAL_STAGES = ("done", "rolled_back")
DEVICE_STATES = ("updating", "updated", "failed", "rolled_back", "rollback_failed")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class RolloutKeys:
    rollout_id: str

    def _key(self, name: str) -> str:
        return f"{PREFIX}:{{{self.rollout_id}}}:{name}"

    @property
    def state(self) -> str:
        return self._key("state")

    @property
    def order(self) -> str:
        return self._key("order")

    @property
    def devices(self) -> str:
        return self._key("devices")

    @property
    def previous(self) -> str:
        return self._key("previous")

    @property
    def lease(self) -> str:
        return self._key("lease")


class RolloutStore:
    """Reads and writes one rollout's keys."""

    def __init__(self, redis: Redis, rollout_id: str) -> None:
        self._redis = redis
        self.rollout_id = rollout_id
        self.keys = RolloutKeys(rollout_id)

    async def create(self, plan: RolloutPlan, devices: Sequence[str], *, now_s: float) -> bool:
        """All of it or nothing (one MULTI, a crash leaves no half rollout); False when
        a rollout of this id exists already (nothing is changed)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self.keys.state)
            if await pipe.exists(self.keys.state):
                return False
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            pipe.delete(self.keys.order, self.keys.devices, self.keys.previous)
            pipe.hset(self.keys.state, mapping=_fields({
                "plan": plan.model_dump_json(by_alias=True), "stage": "canary",
                "createdAtMs": int(now_s * 1000), "devices": len(devices),
                "canary": plan.canary_count(len(devices)), "wave": 0}))
            for start in range(0, len(devices), 10_000):
                pipe.rpush(self.keys.order, *devices[start:start + 10_000])
            try:
                await pipe.execute()
            except WatchError:  # created meanwhile by another caller
                return False
        # Another slot on a Cluster, so not in the MULTI: only the listing can miss it.
        await self._redis.zadd(ROLLOUTS_KEY, {self.rollout_id: int(now_s * 1000)})
        return True

    async def plan(self) -> RolloutPlan | None:
        raw = await self._redis.hget(self.keys.state, "plan")
        return None if raw is None else RolloutPlan.model_validate_json(raw)

    async def state(self) -> dict[str, str]:
        raw = await self._redis.hgetall(self.keys.state)
        return {_text(key): _text(value) for key, value in raw.items()}

    async def update_state(self, **fields: str | int | float) -> None:
        await self._redis.hset(self.keys.state, mapping=_fields(fields))

    async def order(self, start: int = 0, stop: int = -1) -> list[str]:
        return [_text(item) for item in await self._redis.lrange(self.keys.order, start, stop)]

    async def device_states(self, device_ids: Sequence[str]) -> list[str | None]:
        if not device_ids:
            return []
        values = await self._redis.hmget(self.keys.devices, list(device_ids))
        return [None if value is None else _text(value) for value in values]

    async def all_device_states(self) -> dict[str, str]:
        raw = await self._redis.hgetall(self.keys.devices)
        return {_text(key): _text(value) for key, value in raw.items()}

    async def mark(self, states: Mapping[str, str],
                   previous: Mapping[str, str] | None = None) -> None:
        if not states:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.devices, mapping=_fields(states))
            if previous:
                pipe.hset(self.keys.previous, mapping=_fields(previous))
            await pipe.execute()

    async def previous_versions(self, device_ids: Iterable[str]) -> dict[str, str]:
        ids = list(device_ids)
        if not ids:
            return {}
        values = await self._redis.hmget(self.keys.previous, ids)
        return {device: _text(value) for device, value in zip(ids, values, strict=True)
                if value is not None}

    # -- the driver's lease ----------------------------------------------------------

    async def acquire(self, ttl_s: float) -> str | None:
        token = uuid.uuid4().hex
        held = await self._redis.set(self.keys.lease, token, nx=True, px=int(ttl_s * 1000))
        return token if held else None

    async def renew(self, token: str, ttl_s: float) -> bool:
        return bool(await self._redis.eval(_RENEW, 1, self.keys.lease, token,
                                           int(ttl_s * 1000)))

    async def release(self, token: str) -> None:
        await self._redis.eval(_RELEASE, 1, self.keys.lease, token)


async def list_rollouts(redis: Redis, limit: int = 100) -> list[str]:
    return [_text(item) for item in await redis.zrevrange(ROLLOUTS_KEY, 0, limit - 1)]


def _fields(values: Mapping[str, Any]) -> Mapping[Any, Any]:
    return dict(values)  # redis-py's mapping type is invariant in its keys and values


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def counts(states: Mapping[str, str]) -> dict[str, int]:
    tally = dict.fromkeys(DEVICE_STATES, 0)
    for state in states.values():
        tally[state] = tally.get(state, 0) + 1
    return tally


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
