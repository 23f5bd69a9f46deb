"""What operators see of the stream consumers, read from Redis: consumer groups
(pending, lag), their consumers (pending, idle, live heartbeat) and dead letters.
Used by ``connector-fleet consumers``, ``status`` and ``dlq``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.consuming import DeadLetterStream
from framework.core import CONSUMER_HEARTBEAT_PREFIX, consumer_heartbeat_key, lua
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.commands import Confirm, Console


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

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream, "group": self.name, "pending": self.pending, "lag": self.lag,
            "lastDeliveredId": self.last_delivered_id,
            "consumers": [{"name": c.name, "pending": c.pending, "idleMs": c.idle_ms,
                           "alive": c.alive, "inFlight": c.in_flight} for c in self.consumers],
        }


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
    return GroupInfo(stream=stream, name=name, pending=int(raw["pending"]),
                     lag=None if lag is None else int(lag),
                     last_delivered_id=str(raw["last-delivered-id"]),
                     consumers=tuple(consumers))


async def live_consumers(redis: Redis) -> list[dict[str, Any]]:
    """The heartbeats of the consumers running now."""
    beats = []
    async for key in redis.scan_iter(match=f"{CONSUMER_HEARTBEAT_PREFIX}*", count=500):
        value = await redis.get(key)
        if value is not None:
            beats.append(orjson.loads(value))
    return sorted(beats, key=lambda b: (b["group"], b["consumer"]))


def group_rows(groups: Sequence[GroupInfo]) -> list[tuple[str, ...]]:
    """One row per consumer (a group without consumers gets one row of its own)."""
    rows: list[tuple[str, ...]] = []
    for g in groups:
        lag = "?" if g.lag is None else str(g.lag)
        if not g.consumers:
            rows.append((g.stream, g.name, str(g.pending), lag, "-", "-", "-", "-"))
        for c in g.consumers:
            rows.append((g.stream, g.name, str(g.pending), lag, c.name, str(c.pending),
                         f"{c.idle_ms / 1000:.1f}s", "live" if c.alive else "no heartbeat"))
    return rows


GROUP_COLUMNS = ("STREAM", "GROUP", "PENDING", "LAG", "CONSUMER", "ITS PENDING", "IDLE",
                 "HEARTBEAT")


async def consumer_section(redis: Redis, console: Console) -> None:
    """The consumer groups part of ``connector-fleet status`` (nothing if there are none)."""
    from worker.commands import _table

    groups = await read_consumer_groups(redis)
    if groups:
        console.line()
        _table(console, GROUP_COLUMNS, group_rows(groups))


async def show_consumers(redis: Redis, console: Console, *, streams: Sequence[str] | None,
                         as_json: bool) -> int:
    """``connector-fleet consumers``: a table (or JSON) of groups and consumers."""
    from worker.commands import _table

    groups = await read_consumer_groups(redis, streams=streams)
    if as_json:
        console.json([g.as_json() for g in groups])
    elif not groups:
        console.line("no consumer groups")
    else:
        _table(console, GROUP_COLUMNS, group_rows(groups))
    return ExitCode.OK


async def prune_consumers(redis: Redis, console: Console, *, idle_ms: int,
                          confirm: Confirm) -> int:
    """Remove consumers with no pending entry, no heartbeat and idle >= ``idle_ms``;
    each is checked again and removed atomically (``consumer_prune.lua``)."""
    candidates = [(g.stream, g.name, c.name) for g in await read_consumer_groups(redis)
                  for c in g.consumers if c.pending == 0 and not c.alive and c.idle_ms >= idle_ms]
    if not candidates:
        console.line("no consumer to prune")
        return ExitCode.OK
    names = ", ".join(f"{stream}/{group}/{name}" for stream, group, name in candidates)
    if not confirm(f"Remove {len(candidates)} idle consumer(s) without pending entries: "
                   f"{names}?"):
        console.problem("not pruned (confirm, or pass --yes)")
        return ExitCode.FAILURE
    prune = redis.register_script(lua("framework.consuming", "consumer_prune"))
    for stream, group, name in candidates:
        removed = await prune(keys=[stream, consumer_heartbeat_key(group, name)],
                              args=[group, name, idle_ms])
        console.line(f"{'removed' if removed else 'kept (active again)'} {stream}/{group}/{name}")
    return ExitCode.OK


# -- dead letters -------------------------------------------------------------------------

class DeadLetterCommands:
    """``connector-fleet dlq list|show|replay|purge``."""

    def __init__(self, redis: Redis, console: Console, stream: str, *,
                 dead_letter_stream: str | None = None) -> None:
        self._console = console
        self._letters = DeadLetterStream(redis, stream, name=dead_letter_stream)

    async def list_letters(self, *, count: int, after: str | None, as_json: bool) -> int:
        letters = await self._letters.read(count=count, after=after)
        if as_json:
            self._console.json([letter.as_json() for letter in letters])
            return ExitCode.OK
        if not letters:
            self._console.line(f"{self._letters.name}: no dead letters")
            return ExitCode.OK
        total = await self._letters.count()
        self._console.line(f"{self._letters.name}: {total} dead letter(s)")
        for letter in letters:
            rule = f" rule={letter.rule}" if letter.rule else ""
            self._console.line(f"{letter.id}  entry {letter.entry_id}  attempts={letter.attempts}"
                               f"{rule}  {letter.dead_lettered_at}  {letter.reason}")
        return ExitCode.OK

    async def show(self, dead_letter_id: str) -> int:
        letter = await self._letters.get(dead_letter_id)
        if letter is None:
            self._console.problem(f"{self._letters.name}: no dead letter {dead_letter_id}")
            return ExitCode.FAILURE
        self._console.json(letter.as_json())
        return ExitCode.OK

    async def replay(self, dead_letter_ids: Sequence[str], *, every: bool) -> int:
        ids = list(dead_letter_ids)
        if every:
            ids = [letter.id for letter in await self._letters.read(count=1_000_000)]
        missing = 0
        for dead_letter_id in ids:
            try:
                new_id = await self._letters.replay(dead_letter_id)
            except redis_errors.ResponseError as exc:
                self._console.problem(f"{dead_letter_id}: not replayed: {exc}")
                missing += 1
                continue
            if new_id is None:
                self._console.problem(f"{self._letters.name}: no dead letter {dead_letter_id}")
                missing += 1
            else:
                self._console.line(f"replayed {dead_letter_id} to {self._letters.stream} "
                                   f"as {new_id}")
        return ExitCode.FAILURE if missing else ExitCode.OK

    async def purge(self, *, confirm: Confirm) -> int:
        count = await self._letters.count()
        if not count:
            self._console.line(f"{self._letters.name}: no dead letters")
            return ExitCode.OK
        if not confirm(f"Delete the {count} dead letter(s) of {self._letters.stream} "
                       f"({self._letters.name})? They cannot be replayed afterwards."):
            self._console.problem("not purged (confirm, or pass --yes)")
            return ExitCode.FAILURE
        purged = await self._letters.purge()
        self._console.line(f"purged {purged} dead letter(s) from {self._letters.name}")
        return ExitCode.OK
