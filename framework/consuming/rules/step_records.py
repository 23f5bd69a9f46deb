"""``StepRecords``: the completed steps of stream entries, read and written in batches.

A rule's step is recorded as completed in ``fleet:steps:{stream}:{origin_id}``
(field ``rule:step``, its result as JSON, with a TTL) before the entry is
acknowledged, and a redelivered entry reads the record to skip what had
completed. A redelivered entry reads once, and a step followed by another is
written before the next runs (the last one goes with the XACK:
:class:`~framework.consuming.delivery.AckWrite`): with many entries in flight, one round
trip per entry each would cost more than the work itself. So the reads and the
writes requested while a round trip is under way wait for it and go together
in the next one (one Lua script each), as the consumer's acknowledgements do.
Nothing is weakened: :meth:`StepRecords.record` returns only once the record is
in Redis, and :meth:`StepRecords.completed` only once it has been read; a failed
round trip fails every caller in it. On a Redis Cluster a batch is one script call
per slot (the records of one stream shard share its hash tag), sent concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

from redis.asyncio import Redis

from framework.core.scripts import lua
from framework.core.slots import is_cluster, slot_groups

__all__ = ["StepRecords"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
_MAX_BATCH = 256  # keeps one script call short; more wait for the next


class StepRecords:
    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._ttl_s = ttl_s
        self._cluster = is_cluster(redis)
        self._read_script = redis.register_script(lua("framework.consuming", "steps_read"))
        self._write_script = redis.register_script(lua("framework.consuming", "steps_write"))
        self._reads: _Batches[str, dict[str, str]] = _Batches(self._read_many)
        self._writes: _Batches[tuple[str, str, str], None] = _Batches(self._write_many)

    async def completed(self, key: str) -> dict[str, str]:
        """The recorded steps of one entry: field ``rule:step`` -> result JSON."""
        return await self._reads.submit(key)

    async def record(self, key: str, field: str, result_json: str) -> None:
        """Record one completed step; returns once it is written."""
        await self._writes.submit((key, field, result_json))

    async def _read_many(self, keys: list[str]) -> list[dict[str, str]]:
        groups = slot_groups(keys, cluster=self._cluster)
        if len(groups) == 1:
            return await self._read_group(keys)
        found: list[dict[str, str]] = [{} for _ in keys]
        replies = await asyncio.gather(*(self._read_group([keys[i] for i in group])
                                         for group in groups))
        for group, reply in zip(groups, replies, strict=True):
            for index, records in zip(group, reply, strict=True):
                found[index] = records
        return found

    async def _read_group(self, keys: list[str]) -> list[dict[str, str]]:
        # decode_responses=True (framework.core.connections): fields are str.
        replies = cast(list[list[str]], await self._read_script(keys=keys))
        return [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in replies]

    async def _write_many(self, records: list[tuple[str, str, str]]) -> list[None]:
        groups = slot_groups([key for key, _, _ in records], cluster=self._cluster)
        if len(groups) == 1:
            await self._write_group(records)
        else:
            await asyncio.gather(*(self._write_group([records[i] for i in group])
                                   for group in groups))
        return [None] * len(records)

    async def _write_group(self, records: list[tuple[str, str, str]]) -> None:
        args: list[Any] = [self._ttl_s]
        for _, field, result_json in records:
            args += [field, result_json]
        await self._write_script(keys=[key for key, _, _ in records], args=args)


class _Batches(Generic[ItemT, ResultT]):
    """Runs ``run`` on what was submitted meanwhile, one batch at a time."""

    def __init__(self, run: Callable[[list[ItemT]], Awaitable[list[ResultT]]]) -> None:
        self._run = run
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not future.get_loop():
            self._flusher = asyncio.create_task(self._flush(), name="step-records")
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the tasks running in this iteration join
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # each caller fails as if it had made the call
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except asyncio.CancelledError:  # shutting down: nobody may wait forever
                for _, future in batch + self._pending:
                    future.cancel()
                self._pending = []
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # a cancelled caller: the round trip happened anyway
                    future.set_result(result)
