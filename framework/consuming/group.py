"""``GroupMember``: one consumer's commands on a Redis consumer group, without policy.

The :class:`~framework.consuming.consumer.Consumer` decides what to read, when to reclaim and
what to do with a failure; this module says how, in Redis terms: XGROUP CREATE
MKSTREAM (only BUSYGROUP tolerated), XREADGROUP, XAUTOCLAIM with the delivery
counts, XACK, the dead letter (``dead_letter.lua``), the compare-and-touch
heartbeat (``consumer_touch.lua``) and the heartbeat key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.consuming.dead_letters import DeadLetterStream, Failure
from framework.consuming.delivery import AckWrite, Delivery
from framework.consuming.entries import Fields, Undecodable, decode_fields, text
from framework.core.clock import iso_utc
from framework.core.errors import ConfigError
from framework.core.keys import (
    consumer_errors_key,
    consumer_group_start_key,
    consumer_heartbeat_key,
    steps_key,
)
from framework.core.scripts import lua
from framework.core.slots import check_same_slot, is_cluster

# stream, entry id, fields (Undecodable when not UTF-8: dead-lettered, never run)
Entry = tuple[str, str, Fields]


@dataclass(frozen=True)
class Claimed:
    """What one XAUTOCLAIM call took over."""

    entries: list[tuple[str, Fields, int]]  # entry id, fields, delivery count
    deleted: list[str]  # pending ids whose entries no longer exist (trimmed)
    more: bool  # the scan has not reached the end of the pending list


class GroupMember:
    def __init__(self, redis: Redis, *, group: str, consumer: str,
                 dead_letter_streams: Mapping[str, str]) -> None:
        self.group = group
        self.consumer = consumer
        self.cluster = is_cluster(redis)  # streams of different slots are read apart
        self._redis = redis
        self._touch = redis.register_script(lua("framework.consuming", "consumer_touch"))
        self._ack_script = redis.register_script(lua("framework.consuming", "consumer_ack"))
        self._dead_letters = {stream: DeadLetterStream(redis, stream, name=name)
                              for stream, name in dead_letter_streams.items()}
        self._cursors: dict[str, str] = {}
        if self.cluster:
            for stream, name in dead_letter_streams.items():
                check_stream_keys(stream, group=group, dead_letter_stream=name)

    def delivery(self, stream: str, entry_id: str, fields: Mapping[str, str],
                 count: int) -> Delivery:
        return Delivery(stream=stream, entry_id=entry_id, fields=fields, group=self.group,
                        consumer=self.consumer, delivery_count=count)

    async def create_group(self, stream: str, *, start_id: str, at_s: float) -> str | None:
        """The id the new group starts after (``$`` resolved); None if it existed already.
        Where it started is recorded for ``connector-fleet consumers``."""
        try:
            await self._redis.xgroup_create(stream, self.group, id=start_id, mkstream=True)
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
            return None
        groups = await self._redis.xinfo_groups(stream)
        started_at = next((str(g["last-delivered-id"]) for g in groups
                           if g["name"] == self.group), start_id)
        record = {"startId": start_id, "startedAtId": started_at, "at": iso_utc(at_s)}
        await self._redis.hset(consumer_group_start_key(self.group), stream,
                               orjson.dumps(record).decode())
        return started_at

    async def read(self, streams: list[str], *, count: int, block_ms: int) -> list[Entry]:
        """New entries (``>``), at most ``count`` per stream, each decoded on its own."""
        reply = await self._redis.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
            "BLOCK", block_ms, "STREAMS", *streams, *[">"] * len(streams), NEVER_DECODE=True,
            **await self._node_of(streams[0]))
        return [(text(stream), text(entry_id), decode_fields(fields))
                for stream, entries in _stream_replies(reply)
                for entry_id, fields in entries]

    async def _node_of(self, key: str) -> dict[str, Any]:
        """On a cluster, the master that owns ``key``'s slot, named for the command: the
        cluster client would otherwise ask a node (COMMAND GETKEYS) for the keys of
        every XREADGROUP, twice. MOVED and ASK are still followed by the client."""
        if not self.cluster:
            return {}
        cluster: Any = self._redis
        await cluster.initialize()  # after a failure it rereads the slots; else nothing
        node = cluster.get_node_from_key(key)
        return {} if node is None else {"target_nodes": node}

    async def reclaim(self, stream: str, *, min_idle_ms: int, count: int,
                      skip: set[str]) -> Claimed:
        """Take over entries idle past ``min_idle_ms`` (the cursor is kept per stream);
        entries in ``skip`` (still running here) are not returned."""
        reply = await self._redis.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            "XAUTOCLAIM", stream, self.group, self.consumer, min_idle_ms,
            self._cursors.get(stream, "0-0"), "COUNT", count, NEVER_DECODE=True)
        cursor = text(reply[0])
        self._cursors[stream] = cursor
        claimed = [(text(i), decode_fields(f)) for i, f in _entries(reply[1])]
        claimed = [(i, f) for i, f in claimed if i not in skip]
        counts = await self._delivery_counts(stream, [i for i, _ in claimed])
        # XAUTOCLAIM counted a delivery: never 1, even if the entry left the pending list
        # meanwhile (a count of 1 tells the handler no earlier run can have done anything).
        return Claimed(entries=[(i, f, counts.get(i, 2)) for i, f in claimed],
                       deleted=[text(i) for i in (reply[2] if len(reply) > 2 else [])],
                       more=cursor != "0-0")

    async def _delivery_counts(self, stream: str, entry_ids: list[str]) -> dict[str, int]:
        if not entry_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(stream, self.group, entry_id, entry_id, 1)
            replies = cast(list[list[dict[str, Any]]], await pipe.execute())
        return {str(p["message_id"]): int(p["times_delivered"]) for r in replies for p in r}

    async def redeliver(self, delivery: Delivery) -> bool:
        """Deliver an entry this consumer holds to itself again: Redis counts it
        (XCLAIM without JUSTID). False if the entry is no longer ours."""
        if await self.touch(delivery.stream, [delivery.entry_id], idle_ms=0):
            return False
        claimed = await self._redis.xclaim(delivery.stream, self.group, self.consumer, 0,
                                           [delivery.entry_id])
        return bool(claimed)

    async def ack(self, settled: list[tuple[Delivery, Sequence[AckWrite]]]) -> list[bool]:
        """XACK each entry, with the records its handler returned (and forget its
        recorded error), in one round trip; per entry, False if it was no longer pending
        (another consumer settled it)."""
        if not settled:
            return []
        by_stream: dict[str, list[int]] = {}
        for index, (delivery, _) in enumerate(settled):
            by_stream.setdefault(delivery.stream, []).append(index)
        acked = [False] * len(settled)
        # One EVALSHA per stream (a pipeline would add a SCRIPT EXISTS round trip).
        calls = [self._ack_script(keys=self._ack_keys(stream, settled, indexes),
                                  args=self._ack_args(settled, indexes))
                 for stream, indexes in by_stream.items()]
        # One stream (the common case): no task to gather.
        replies = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        for indexes, reply in zip(by_stream.values(), replies, strict=True):
            for index, result in zip(indexes, reply, strict=True):
                acked[index] = bool(result)
        return acked

    def _ack_keys(self, stream: str, settled: list[tuple[Delivery, Sequence[AckWrite]]],
                  indexes: list[int]) -> list[str]:
        return [stream, consumer_errors_key(self.group, stream),
                *(write.key for i in indexes for write in settled[i][1])]

    def _ack_args(self, settled: list[tuple[Delivery, Sequence[AckWrite]]],
                  indexes: list[int]) -> list[str | int]:
        args: list[str | int] = [self.group, len(indexes)]
        args += [settled[i][0].entry_id for i in indexes]
        for position, i in enumerate(indexes, start=1):
            for write in settled[i][1]:
                settle = "" if write.settle_ttl_s is None else write.settle_ttl_s
                args += [write.field, write.value, write.ttl_s, settle, position]
        return args

    def dead_letter_stream(self, stream: str) -> str:
        return self._dead_letters[stream].name

    async def dead_letter(self, delivery: Delivery, failure: Failure, *, at_s: float,
                          undecodable: Undecodable | None = None) -> str | None:
        """Dead letter + XACK, atomically; None if it was no longer pending."""
        return await self._dead_letters[delivery.stream].write(delivery, failure, at_s=at_s,
                                                               undecodable=undecodable)

    async def record_error(self, delivery: Delivery, record: Mapping[str, Any]) -> None:
        """Keep the last error, for the dead letter another consumer may write."""
        await self._redis.hset(consumer_errors_key(self.group, delivery.stream),
                               delivery.entry_id, orjson.dumps(record).decode())

    async def last_error(self, delivery: Delivery) -> dict[str, Any] | None:
        raw = await self._redis.hget(consumer_errors_key(self.group, delivery.stream),
                                     delivery.entry_id)
        return cast(dict[str, Any], orjson.loads(raw)) if raw else None

    async def touch(self, stream: str, entry_ids: list[str], *, idle_ms: int) -> list[str]:
        """Set the idle time of the entries still ours (0: heartbeat; the visibility
        timeout: hand them over); returns the ids that are no longer ours."""
        if not entry_ids:
            return []
        lost = await self._touch(keys=[stream], args=[self.group, self.consumer, idle_ms,
                                                      *entry_ids])
        return [str(entry_id) for entry_id in lost]

    async def claim_name(self, beat: Mapping[str, Any], *, ttl_ms: int) -> dict[str, Any] | None:
        """Write the first heartbeat unless another live process (another host or pid)
        holds this consumer name; that process's heartbeat if it does."""
        key = consumer_heartbeat_key(self.group, self.consumer)
        if await self._redis.set(key, orjson.dumps(beat), px=ttl_ms, nx=True):
            return None
        raw = await self._redis.get(key)
        holder = cast(dict[str, Any], orjson.loads(raw)) if raw else {}
        if holder and (holder.get("host"), holder.get("pid")) != (beat["host"], beat["pid"]):
            return holder
        # Expired meanwhile, or this very process restarted (a container's pid 1).
        await self.publish_heartbeat(beat, ttl_ms=ttl_ms)
        return None

    async def publish_heartbeat(self, beat: Mapping[str, Any], *, ttl_ms: int) -> None:
        await self._redis.set(consumer_heartbeat_key(self.group, self.consumer),
                              orjson.dumps(beat), px=ttl_ms)

    async def forget_heartbeat(self) -> None:
        await self._redis.delete(consumer_heartbeat_key(self.group, self.consumer))


def check_stream_keys(stream: str, *, group: str, dead_letter_stream: str) -> None:
    """On a Redis Cluster, the keys that one script touches with ``stream`` (its dead
    letters, its step records, its group's last errors) must share its slot: they
    derive from its hash tag. ConfigError naming the stream otherwise."""
    try:
        check_same_slot(f"stream {stream!r}", [
            stream, dead_letter_stream, consumer_errors_key(group, stream),
            steps_key(stream, "0-0")])
    except ValueError as exc:
        raise ConfigError(f"{exc} (the dead-letter stream {dead_letter_stream!r} and the "
                          f"group name {group!r} must not carry another tag)") from None


def _stream_replies(reply: Any) -> list[tuple[bytes, Any]]:
    """XREADGROUP's reply, RESP2 (a list) or RESP3 (a map) alike."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        return [(stream, _entries(entries)) for stream, entries in reply.items()]
    return [(stream, _entries(entries)) for stream, entries in reply]


def _entries(entries: Any) -> list[tuple[bytes, Any]]:
    """(entry id, fields) pairs; an entry deleted while pending has no fields."""
    return [(entry[0], entry[1]) for entry in entries or [] if entry and entry[0] is not None]
