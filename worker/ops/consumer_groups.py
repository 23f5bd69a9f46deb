"""What operators see of the stream consumers, read from Redis: consumer groups
(pending, lag) and their consumers (pending, idle, live heartbeat)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core import consumer_group_start_key, consumer_heartbeat_key


@dataclass(frozen=True)
class ConsumerInfo:
    name: str
    pending: int
    idle_ms: int
    alive: bool  # its heartbeat key exists
    in_flight: int | None


@dataclass(frozen=True)
class GroupInfo:
    stream: str
    name: str
    pending: int
    lag: int | None  # None: Redis cannot tell (entries deleted in the range)
    last_delivered_id: str
    consumers: tuple[ConsumerInfo, ...]
    # Where the group was created (recorded by the consumer that created it); None when
    # unknown (created by another tool, or before this was recorded).
    start_id: str | None = None
    started_at_id: str | None = None

    def start(self) -> str:
        """``$@1700000000000-0``: the setting and the id it resolved to (one word: a
        table column)."""
        if self.start_id is None:
            return "unknown"
        if self.started_at_id in (self.start_id, f"{self.start_id}-0"):  # "0" is "0-0"
            return self.start_id
        return f"{self.start_id}@{self.started_at_id}"

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream, "group": self.name, "pending": self.pending, "lag": self.lag,
            "lastDeliveredId": self.last_delivered_id,
            "startId": self.start_id, "startedAtId": self.started_at_id,
            "consumers": [{"name": c.name, "pending": c.pending, "idleMs": c.idle_ms,
                           "alive": c.alive, "inFlight": c.in_flight} for c in self.consumers],
        }


@dataclass(frozen=True)
class ConsumerAddress:
    stream: str
    group: str
    consumer: str

    def __str__(self) -> str:
        return f"{self.stream}/{self.group}/{self.consumer}"


async def read_consumer_groups(redis: Redis, *, streams: Sequence[str] | None = None,
                               group: str | None = None) -> list[GroupInfo]:
    """Every group of ``streams`` (default: every stream that has groups)."""
    names = list(streams) if streams is not None else await _streams_with_groups(redis)
    found: list[GroupInfo] = []
    for stream in names:
        try:
            groups = await redis.xinfo_groups(stream)
        except redis_errors.ResponseError:  # no such stream (yet)
            continue
        for raw in groups:
            if group is None or raw["name"] == group:
                found.append(await _group(redis, stream, raw))
    return found


def prunable_consumers(groups: Sequence[GroupInfo], *, idle_ms: int) -> list[ConsumerAddress]:
    """Consumers with no pending entry, no heartbeat, idle for ``idle_ms`` or more."""
    return [ConsumerAddress(g.stream, g.name, c.name) for g in groups for c in g.consumers
            if c.pending == 0 and not c.alive and c.idle_ms >= idle_ms]


async def _streams_with_groups(redis: Redis) -> list[str]:
    streams = [str(key) async for key in redis.scan_iter(count=500, _type="STREAM")]
    return sorted(streams)


async def _group(redis: Redis, stream: str, raw: dict[str, Any]) -> GroupInfo:
    name = str(raw["name"])
    consumers = []
    for consumer in await redis.xinfo_consumers(stream, name):
        beat = await redis.get(consumer_heartbeat_key(name, str(consumer["name"])))
        consumers.append(ConsumerInfo(
            name=str(consumer["name"]), pending=int(consumer["pending"]),
            idle_ms=int(consumer["idle"]), alive=beat is not None,
            in_flight=int(orjson.loads(beat)["inFlight"]) if beat else None))
    lag = raw.get("lag")
    start = await redis.hget(consumer_group_start_key(name), stream)
    started: dict[str, Any] = orjson.loads(start) if start else {}
    return GroupInfo(stream=stream, name=name, pending=int(raw["pending"]),
                     lag=None if lag is None else int(lag),
                     last_delivered_id=str(raw["last-delivered-id"]),
                     consumers=tuple(consumers), start_id=started.get("startId"),
                     started_at_id=started.get("startedAtId"))
