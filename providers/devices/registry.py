"""The device registry in Redis: each device's group, tags, last-seen time and status.

A device is a hash (``fleet:{devices}:device:ID``), listed in an index (a sorted set
with score 0, paged by ``ZRANGEBYLEX``) and in its group's set. Heartbeats come from
any source stream (a rule's ``absence`` trigger calls ``device_heartbeat``, see
:mod:`providers.devices.heartbeats`): ``heartbeat.lua`` records the time, moves the
device's deadline in ``fleet:{devices}:deadlines`` and, for a device that was absent,
adds its one ``device.returned`` event in the same step. Time comes from the clock
given (a fake one in tests), never from Redis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from framework.core import DEFAULT_STREAM_MAXLEN, Clock, iso_utc, lua
from providers.devices.registry_keys import (
    DEFAULT_GROUP,
    DEFAULT_TIMEOUT_S,
    DeviceKeys,
    check_device_id,
    check_group,
    check_tags,
)

MAX_PAGE = 1000
HEARTBEAT_BATCH = 200  # per script call: bounded time inside Redis
REGISTER_CHUNK = 1000
MAX_CONTEXT_BYTES = 4096


@dataclass(frozen=True)
class Heartbeat:
    device_id: str
    seen_at_s: float | None = None  # default: now
    timeout_s: float = DEFAULT_TIMEOUT_S  # unless the device's group sets one
    group: str = DEFAULT_GROUP  # for a device seen for the first time
    context: Mapping[str, Any] = field(default_factory=dict)
    rule: str = ""


@dataclass(frozen=True)
class HeartbeatOutcome:
    device_id: str
    outcome: str  # new | online | returned | late | stale
    deadline_ms: int | None


@dataclass(frozen=True)
class Device:
    id: str
    group: str
    tags: list[str]
    status: str  # unknown (never seen) | online | absent
    last_seen: str | None
    last_seen_ms: int | None
    absent_since_ms: int | None
    absences: int
    timeout_ms: int | None
    deadline_ms: int | None
    context: dict[str, Any]
    suppressed_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "tags": self.tags, "status": self.status,
                "lastSeen": self.last_seen, "lastSeenMs": self.last_seen_ms,
                "absentSinceMs": self.absent_since_ms, "absences": self.absences,
                "timeoutMs": self.timeout_ms, "deadlineMs": self.deadline_ms,
                "context": self.context, "maintenanceWindow": self.suppressed_by}


@dataclass(frozen=True)
class DevicePage:
    devices: list[Device]
    next_after: str | None  # pass as ``after`` for the next page; None: no more


class DeviceRegistry:
    def __init__(self, redis: Redis, *, clock: Clock, keys: DeviceKeys | None = None,
                 stream_max_len: int = DEFAULT_STREAM_MAXLEN) -> None:
        self.keys = keys or DeviceKeys()
        self._redis = redis
        self._clock = clock
        self._max_len = stream_max_len
        self._heartbeat = redis.register_script(lua("providers.devices", "heartbeat"))

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatOutcome:
        return (await self.heartbeats([beat]))[0]

    async def heartbeats(self, beats: Sequence[Heartbeat]) -> list[HeartbeatOutcome]:
        """Record many heartbeats, ``HEARTBEAT_BATCH`` per script call; each is checked
        first, and a bad one raises ValueError naming it before any is sent."""
        now_s = self._clock.time()
        now_iso = iso_utc(now_s)
        arguments = [self._arguments(beat, now_s, now_iso) for beat in beats]
        keys = [self.keys.deadlines, self.keys.timeouts, self.keys.events_stream,
                self.keys.index]
        common: list[Any] = [int(now_s * 1000), now_iso, self._max_len,
                             self.keys.device_prefix, self.keys.group_prefix]
        replies: list[Any] = []
        # Batches in one pipeline: one round trip per call of this method.
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(arguments), HEARTBEAT_BATCH):
                batch = arguments[start:start + HEARTBEAT_BATCH]
                await self._heartbeat(keys=keys, client=pipe,
                                      args=common + [v for args in batch for v in args])
            for reply in await pipe.execute():
                replies.extend(reply)
        return [HeartbeatOutcome(beat.device_id, _text(reply[0]),
                                 int(reply[1]) if int(reply[1]) >= 0 else None)
                for beat, reply in zip(beats, replies, strict=True)]

    def _arguments(self, beat: Heartbeat, now_s: float, now_iso: str) -> list[Any]:
        device_id = check_device_id(beat.device_id)
        group = check_group(beat.group)
        if not 0 < beat.timeout_s <= 366 * 86400:
            raise ValueError(f"device {device_id}: timeout must be in (0 s, 366 days], "
                             f"got {beat.timeout_s}")
        context = json.dumps(dict(beat.context), separators=(",", ":"),
                             default=str) if beat.context else "{}"
        if len(context) > MAX_CONTEXT_BYTES:
            raise ValueError(f"device {device_id}: context over {MAX_CONTEXT_BYTES} bytes")
        if beat.seen_at_s is None or beat.seen_at_s >= now_s:
            seen_s, seen_iso = now_s, now_iso  # the common case: formatted once per batch
        else:
            seen_s, seen_iso = beat.seen_at_s, iso_utc(beat.seen_at_s)
        return [device_id, int(seen_s * 1000), seen_iso, int(beat.timeout_s * 1000),
                group, context, beat.rule]

    async def register(self, device_id: str, *, group: str = DEFAULT_GROUP,
                       tags: Sequence[str] = ()) -> None:
        """Create or update a device's group and tags (import); its status is kept."""
        await self.register_many([(device_id, group, tags)])

    async def register_many(self, rows: Sequence[tuple[str, str, Sequence[str]]]) -> int:
        """``register`` for each (id, group, tags), ``REGISTER_CHUNK`` per round trip;
        all are checked first (ValueError names the bad one); how many were written."""
        checked = [(check_device_id(i), check_group(g), check_tags(list(t))) for i, g, t in rows]
        created_ms = int(self._clock.time() * 1000)
        for start in range(0, len(checked), REGISTER_CHUNK):
            chunk = checked[start:start + REGISTER_CHUNK]
            async with self._redis.pipeline(transaction=False) as pipe:
                for device_id, _, _ in chunk:
                    pipe.hget(self.keys.device(device_id), "group")
                old_groups = await pipe.execute()
            async with self._redis.pipeline(transaction=True) as pipe:
                for (device_id, group, tags), old in zip(chunk, old_groups, strict=True):
                    self._queue_register(pipe, device_id, group, tags, old, created_ms)
                await pipe.execute()
        return len(checked)

    def _queue_register(self, pipe: Any, device_id: str, group: str, tags: list[str],
                        old_group: Any, created_ms: int) -> None:
        if old_group is not None and _text(old_group) != group:
            pipe.srem(self.keys.group(_text(old_group)), device_id)
        key = self.keys.device(device_id)
        pipe.hset(key, mapping={"id": device_id, "group": group, "tags": json.dumps(tags)})
        pipe.hsetnx(key, "createdMs", created_ms)
        pipe.zadd(self.keys.index, {device_id: 0})
        pipe.sadd(self.keys.group(group), device_id)

    async def show(self, device_id: str) -> Device | None:
        device_id = check_device_id(device_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.device(device_id))
            pipe.zscore(self.keys.deadlines, device_id)
            fields, deadline = await pipe.execute()
        return _device(device_id, fields, deadline) if fields else None

    async def page(self, *, after: str = "", count: int = 100, group: str | None = None,
                   status: str | None = None) -> DevicePage:
        """Devices in id order after ``after``; ``group``/``status`` filter the page
        (a filtered page may be short: follow ``next_after``)."""
        count = max(1, min(count, MAX_PAGE))
        low = f"({after}" if after else "-"
        if group is not None:
            ids = sorted(_text(i) for i in await self._redis.smembers(
                self.keys.group(check_group(group))))
            ids = [i for i in ids if i > after][:count]
        else:
            ids = [_text(i) for i in await self._redis.zrangebylex(
                self.keys.index, low, "+", start=0, num=count)]
        devices = [d for d in await self._many(ids) if status is None or d.status == status]
        return DevicePage(devices, ids[-1] if len(ids) == count else None)

    async def _many(self, ids: Sequence[str]) -> list[Device]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.hgetall(self.keys.device(device_id))
                pipe.zscore(self.keys.deadlines, device_id)
            replies = await pipe.execute()
        pairs = zip(ids, replies[0::2], replies[1::2], strict=True)
        return [_device(i, fields, deadline) for i, fields, deadline in pairs if fields]

    async def count(self) -> int:
        return int(await self._redis.zcard(self.keys.index))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(fields: Mapping[str, str], name: str) -> int | None:
    raw = fields.get(name)
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


def _device(device_id: str, raw: Mapping[Any, Any], deadline: Any) -> Device:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    return Device(
        id=device_id, group=fields.get("group", DEFAULT_GROUP),
        tags=_json(fields.get("tags"), []), status=fields.get("status", "unknown"),
        last_seen=fields.get("lastSeen"), last_seen_ms=_int(fields, "lastSeenMs"),
        absent_since_ms=_int(fields, "absentSinceMs"), absences=_int(fields, "absences") or 0,
        timeout_ms=_int(fields, "timeoutMs"),
        deadline_ms=int(deadline) if deadline is not None else None,
        context=_json(fields.get("context"), {}), suppressed_by=fields.get("suppressedBy"))


def _json(raw: str | None, default: Any) -> Any:
    try:
        value = json.loads(raw) if raw else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default
