"""The Kafka consumer behind ``kafka-source``: a :class:`PushSource` whose positions
are the next offset of each partition (``{"orders:0": "42"}``).

Exactly once into the stream: the positions are saved by the push connector in the
same fenced commit as the batch's entries, and a start seeks every partition to its
saved position. Kafka's committed offsets are never read back; with a ``groupId``
they are written after each commit (at most once a second) for lag tooling.

What a start does with a partition that has no saved position: ``startFrom`` on the
first start; the beginning for a partition that appeared later. The first receive
after a start reports the positions resolved, so they are saved before any record:
a crash before the first batch cannot move a ``latest`` start past records.

Two checks run every :data:`CHECK_INTERVAL_S` between fetches: new partitions of the
topics are assigned (unless ``partitions`` is fixed), and a position below the
partition's log start (records that retention deleted while the connector was
away) moves to the log start, loudly. A position past the log's end (a log that was
truncated or replaced) moves to its start when the broker says so (Kafka answers
the fetch with OFFSET_OUT_OF_RANGE; Tansu 0.6 answers with nothing, so there the
source waits until the log grows past the position). The log's end is not checked
by ListOffsets: Tansu 0.6 reports the last *batch*'s offset + 1 there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.structs import TopicPartition

from framework.core import (
    Clock,
    Logger,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from framework.polling import Batch
from providers.kafka.config import KafkaSourceConfig
from providers.kafka.events import Record, parse_position_key, position_key

CHECK_INTERVAL_S = 5.0
COMMIT_INTERVAL_S = 1.0
# After a failed start, the worker waits this long before the next window tries again.
RETRY_AFTER_S = 2.0
_FETCH_BYTES_FLOOR = 16 * 1024 * 1024


class Consumer(Protocol):
    """The part of aiokafka's consumer used here (aiokafka's own is unannotated)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def topics(self) -> set[str]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def seek_to_end(self, *partitions: TopicPartition) -> bool: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool: ...
    async def position(self, partition: TopicPartition) -> int: ...
    async def beginning_offsets(self, partitions: list[TopicPartition]
                                ) -> dict[TopicPartition, int]: ...
    async def end_offsets(self, partitions: list[TopicPartition]
                          ) -> dict[TopicPartition, int]: ...
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Record]]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


@dataclass(frozen=True)
class KafkaSourceDeps:
    """What the source needs besides its settings."""

    connector: str
    request_timeout_ms: int
    clock: Clock
    logger: Logger


class KafkaSource:
    """See the module docstring. Calls come from one task, one at a time."""

    def __init__(self, settings: KafkaSourceConfig, deps: KafkaSourceDeps) -> None:
        self._settings = settings
        self._deps = deps
        self._log = deps.logger
        self._consumer: Consumer | None = None
        # The next offset of every assigned partition: what the stream holds up to.
        self._next: dict[TopicPartition, int] = {}
        self._unsaved = False
        # Offsets in the stream that the group has not heard of yet.
        self._acked: dict[TopicPartition, int] = {}
        self._checked_at = 0.0
        self._committed_at = 0.0

    @property
    def _timeout_s(self) -> float:
        return self._deps.request_timeout_ms / 1000

    # -- PushSource -------------------------------------------------------------------

    async def start(self, positions: Mapping[str, str]) -> None:
        # aiokafka declares no types for its constructor.
        consumer: Consumer = AIOKafkaConsumer(**self._consumer_options())  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(self._timeout_s):
                await consumer.start()
                partitions = await self._partitions(consumer)
                consumer.assign(partitions)
                saved = _saved_offsets(positions)
                first = not saved
                for tp in partitions:
                    await self._seek(consumer, tp, saved.get(tp), first=first)
                self._next = {tp: await consumer.position(tp) for tp in partitions}
        except BaseException as exc:
            await _stop_quietly(consumer, self._timeout_s)
            if isinstance(exc, SourceError) or not isinstance(exc, Exception):
                raise
            raise self._failure("start", exc) from exc
        self._consumer = consumer
        self._unsaved = True
        self._checked_at = self._deps.clock.monotonic()
        self._log.info("kafka_assigned", partitions=sorted(map(position_key, self._next)))

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Record]:
        consumer = self._running()
        if self._unsaved:  # the positions a start resolved: saved before any record
            self._unsaved = False
            return Batch((), self._positions(self._next))
        if self._deps.clock.monotonic() - self._checked_at >= CHECK_INTERVAL_S:
            moved = await self._check(consumer)
            if moved:
                return Batch((), self._positions(moved))
        try:
            fetched = await consumer.getmany(timeout_ms=int(wait_s * 1000),
                                             max_records=max_messages)
        except OffsetOutOfRangeError as exc:
            # Past the log's end: the log was truncated or replaced under us.
            return Batch((), self._positions(await self._rewind_to_start(consumer, exc)))
        except KafkaError as exc:
            raise self._failure("fetch", exc) from exc
        records: list[Record] = []
        after: dict[TopicPartition, int] = {}
        for tp, batch in fetched.items():
            if batch:
                records += batch
                after[tp] = batch[-1].offset + 1
        self._next.update(after)
        return Batch(records, self._positions(after))

    async def acknowledge(self, batch: Batch[Record]) -> None:
        """The batch is in the stream; with a ``groupId``, Kafka hears of it too (at
        most once a second, and at stop)."""
        if self._settings.group_id is None:
            return
        self._acked.update(_saved_offsets(batch.positions))
        if self._deps.clock.monotonic() - self._committed_at >= COMMIT_INTERVAL_S:
            await self._commit_acked()

    async def _commit_acked(self) -> None:
        consumer = self._consumer
        if consumer is None or not self._acked:
            return
        self._committed_at = self._deps.clock.monotonic()
        offsets, self._acked = self._acked, {}
        try:
            async with asyncio.timeout(self._timeout_s):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:  # lag tooling only: never a failure
            self._log.warning("kafka_commit_failed", error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        await self._commit_acked()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _stop_quietly(consumer, self._timeout_s)

    # -- start ----------------------------------------------------------------------

    def _consumer_options(self) -> dict[str, Any]:
        settings = self._settings
        return {
            "bootstrap_servers": settings.brokers,
            "group_id": settings.group_id,
            "client_id": f"connector-fleet-{self._deps.connector}",
            "enable_auto_commit": False,
            # Positions are set by seeks; a reset is this source's decision (_check).
            "auto_offset_reset": "none",
            "request_timeout_ms": self._deps.request_timeout_ms,
            "max_partition_fetch_bytes": settings.max_message_bytes,
            "fetch_max_bytes": max(_FETCH_BYTES_FLOOR, 2 * settings.max_message_bytes),
            **settings.client_options(),
        }

    async def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        await consumer.topics()  # fresh metadata
        wanted = self._settings.partitions
        partitions: list[TopicPartition] = []
        for topic in self._settings.topic_names:
            present = consumer.partitions_for_topic(topic)
            if not present:
                raise TransientSourceError(
                    f"kafka-source {self._deps.connector}: topic {topic!r} does not exist on "
                    f"{','.join(self._settings.brokers)}", connector=self._deps.connector,
                    retry_after_s=RETRY_AFTER_S)
            missing = sorted(set(wanted or ()) - set(present))
            if missing:
                raise PermanentSourceError(
                    f"kafka-source {self._deps.connector}: topic {topic!r} has no partition "
                    f"{missing} (it has {sorted(present)})", connector=self._deps.connector)
            partitions += [TopicPartition(topic, p) for p in sorted(wanted or present)]
        return partitions

    async def _seek(self, consumer: Consumer, tp: TopicPartition, saved: int | None,
                    *, first: bool) -> None:
        if saved is not None:
            consumer.seek(tp, saved)
        elif first and self._settings.start_from == "latest":
            await consumer.seek_to_end(tp)
        else:
            await consumer.seek_to_beginning(tp)

    # -- while running ----------------------------------------------------------------

    async def _check(self, consumer: Consumer) -> dict[TopicPartition, int]:
        """New partitions assigned and positions outside their log moved to its
        beginning; returns the positions that moved."""
        self._checked_at = self._deps.clock.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._settings.partitions is None:
                    partitions = await self._partitions(consumer)
                    if set(partitions) != set(self._next):
                        await self._reassign(consumer, partitions)
                return await self._move_out_of_range(consumer)
        except (KafkaError, TimeoutError, TransientSourceError) as exc:
            # The broker may be away; the fetches say so, and the next check retries.
            self._log.warning("kafka_check_failed", error=f"{type(exc).__name__}: {exc}")
            return {}

    async def _reassign(self, consumer: Consumer, partitions: list[TopicPartition]
                        ) -> None:
        known = dict(self._next)
        consumer.assign(partitions)
        for tp in partitions:
            await self._seek(consumer, tp, known.get(tp), first=False)
        self._next = {tp: await consumer.position(tp) for tp in partitions}
        self._unsaved = True
        self._log.info("kafka_assigned", partitions=sorted(map(position_key, self._next)))

    async def _move_out_of_range(self, consumer: Consumer) -> dict[TopicPartition, int]:
        """Positions below their partition's log start (records that retention deleted
        while the connector was away) move to the log start."""
        assigned = list(self._next)
        firsts = await consumer.beginning_offsets(assigned)
        behind = {tp: firsts[tp] for tp in assigned if self._next[tp] < firsts[tp]}
        return self._rewind(consumer, behind, reason="below_log_start")

    async def _rewind_to_start(self, consumer: Consumer, exc: OffsetOutOfRangeError
                               ) -> dict[TopicPartition, int]:
        named = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        gone = [tp for tp in named if tp in self._next] or list(self._next)
        firsts = await consumer.beginning_offsets(gone)
        return self._rewind(consumer, firsts, reason="past_log_end")

    def _rewind(self, consumer: Consumer, to: Mapping[TopicPartition, int], *, reason: str
                ) -> dict[TopicPartition, int]:
        for tp, offset in to.items():
            self._log.warning("kafka_position_out_of_range", partition=position_key(tp),
                              position=self._next.get(tp), moved_to=offset, reason=reason)
            consumer.seek(tp, offset)
        self._next.update(to)
        return dict(to)

    # -- helpers ----------------------------------------------------------------------

    def _running(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the Kafka source is not started")
        return self._consumer

    def _positions(self, offsets: Mapping[TopicPartition, int]) -> dict[str, str]:
        return {position_key(tp): str(offset) for tp, offset in offsets.items()}

    def _failure(self, step: str, exc: Exception) -> TransientSourceError:
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyError) and self._settings.sasl is not None:
            # aiokafka's SCRAM client fails with KeyError('v') when the broker answers
            # with an error (e=unknown-user, e=invalid-proof) instead of a signature.
            reason = (f"SASL authentication of user {self._settings.sasl.username!r} "
                      "failed: the broker refused the credentials")
        return TransientSourceError(
            f"kafka-source {self._deps.connector}: {step} on "
            f"{','.join(self._settings.brokers)} failed: {reason}",
            connector=self._deps.connector, retry_after_s=RETRY_AFTER_S)


def _saved_offsets(positions: Mapping[str, str]) -> dict[TopicPartition, int]:
    saved: dict[TopicPartition, int] = {}
    for key, value in positions.items():
        tp = parse_position_key(key)
        if tp is not None and value.isdigit():
            saved[tp] = int(value)
    return saved


async def _stop_quietly(consumer: Consumer, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.stop()
    except Exception:  # a consumer that cannot say goodbye is dropped all the same
        return
