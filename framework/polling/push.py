"""The push connector: a source that delivers messages (a broker, a receiver)
under the same lease and worker as the pollers.

A *push source* (:class:`PushSource`) hands over batches of messages with the
positions to resume from after them; :class:`PushConnector` turns each message
into an event, appends the batch and saves the positions in one fenced commit
(:mod:`framework.polling.append`), and only then acknowledges the batch to the
source (MQTT PUBACK, AMQP ack, a webhook's 2xx). So a message is acknowledged
only once it is in the stream, and a crash before that leaves it with the peer,
which delivers it again.

One ``poll`` drains the source for a short window (at most
:data:`PUSH_WINDOW_S`, or the poll interval when shorter), committing each batch as
it comes, and the worker starts the next window at once (:class:`PushingConnector`):
so a stop drains within a window and metrics move every window. A commit that fails
(lease lost, state moved, Redis down) stops the source: the next window starts it
again from the positions saved with the last batch that was appended, and the peer
redelivers what was not acknowledged. So does a failed ``receive`` (the peer
went away): the source is stopped and started again by the next window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import orjson

from framework.core.clock import Clock, iso_utc
from framework.core.logs import Logger
from framework.polling.append import (
    ANY_GENERATION,
    Appended,
    DedupeWindow,
    Message,
    Rejected,
)
from framework.polling.config import ConnectorConfig
from framework.polling.diff import encode_signal
from framework.polling.poller import PollSummary
from framework.polling.state import StateStore

TMsg = TypeVar("TMsg")
TSignal = TypeVar("TSignal")

PUSH_WINDOW_S = 1.0
# A rejected message's raw bytes kept for inspection, at most.
REJECTED_RAW_BYTES = 64 * 1024


@dataclass(frozen=True)
class Batch(Generic[TMsg]):
    """Messages received together, and where the source resumes after them (e.g.
    ``{"orders:0": "42"}``: the next offset of each partition). Positions are
    saved with the batch; sources that resume through the peer give none."""

    messages: Sequence[TMsg] = ()
    positions: Mapping[str, str] = field(default_factory=dict)


class PushSource(Protocol[TMsg]):
    """What a pushing system supplies. Calls come from one task, one at a time."""

    async def start(self, positions: Mapping[str, str]) -> None:
        """Connect (again) and resume after ``positions``: those saved with the last
        batch that was appended (empty the first time)."""
        ...

    async def receive(self, max_messages: int, wait_s: float) -> Batch[TMsg]:
        """At most ``max_messages``, waiting at most ``wait_s`` for the first one;
        an empty batch when none came."""
        ...

    async def acknowledge(self, batch: Batch[TMsg]) -> None:
        """``batch`` is in the stream: the peer may forget it."""
        ...

    async def stop(self) -> None:
        """Disconnect; what was not acknowledged goes back to the peer (or is read
        again from the saved positions). Called on lease loss, a failed commit, and
        close; ``start`` may follow."""
        ...


@dataclass(frozen=True)
class PushParts(Generic[TMsg, TSignal]):
    """A push source and how its messages become events. ``dedupe_key``: the
    peer's id of a message (e.g. AMQP ``message_id``), to drop redeliveries; ``raw``:
    the message's bytes, kept when it cannot be made an event. ``ordered``: commits
    check the state generation (one reader resuming from positions); False for
    receivers whose messages are independent."""

    source: PushSource[TMsg]
    item_id: Callable[[TMsg], str]
    transformer: Callable[[TMsg], TSignal]
    raw: Callable[[TMsg], bytes]
    dedupe_key: Callable[[TMsg], str | None] = lambda _message: None
    window: DedupeWindow = field(default_factory=DedupeWindow)
    ordered: bool = True
    max_batch: int = 500


@runtime_checkable
class PushingConnector(Protocol):
    """A connector whose polls follow each other without waiting for the interval,
    and whose source must let go when the lease is lost."""

    async def suspend(self) -> None: ...


class PushConnector(Generic[TMsg, TSignal]):
    """Runs a :class:`PushSource` under the worker (see the module docstring)."""

    def __init__(
        self,
        *,
        config: ConnectorConfig,
        parts: PushParts[TMsg, TSignal],
        store: StateStore,
        clock: Clock,
        logger: Logger,
    ) -> None:
        self.config = config
        self._clock = clock
        self._parts = parts
        self._source = parts.source
        self._store = store
        self._appender = store.appender(parts.window)
        self._log = logger
        self._started = False
        self._generation = ""
        self._positions: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.config.name

    async def poll(self) -> PollSummary:
        """One window: receive and commit batches until it ends."""
        if not self._started:
            await self._start()
        window_s = min(PUSH_WINDOW_S, self.config.poll_interval_ms / 1000)
        ends = self._clock.monotonic() + window_s
        summary = PollSummary(pages=0)
        while True:
            wait_s = max(0.0, ends - self._clock.monotonic())
            try:
                batch = await self._source.receive(self._parts.max_batch, wait_s)
            except Exception:
                await self.suspend()  # the next window connects again
                raise
            if batch.messages or _moves(self._positions, batch.positions):
                summary += await self._commit(batch)
            if self._clock.monotonic() >= ends:
                return summary

    async def _start(self) -> None:
        state = await self._store.load()
        self._generation = state.generation
        self._positions = dict(state.cursors)
        try:
            await self._source.start(self._positions)
        except BaseException:
            await self._source.stop()  # a half-open session is not left behind
            raise
        self._started = True
        self._log.info("push_source_started", positions=self._positions)

    async def _commit(self, batch: Batch[TMsg]) -> PollSummary:
        messages, rejected = self._encode(batch.messages)
        positions = {**self._positions, **batch.positions}
        try:
            done = await self._appender.append(
                messages, rejected=rejected, state=self._state_fields(positions),
                generation=self._generation if self._parts.ordered else ANY_GENERATION)
        except BaseException:
            # Lease lost, state moved, Redis down or cancelled: nothing of the batch
            # was acknowledged; start over from what the stream holds.
            await self.suspend()
            raise
        self._generation, self._positions = done.generation, positions
        await self._source.acknowledge(batch)
        return _summary(len(batch.messages), done, len(rejected))

    def _encode(self, batch: Sequence[TMsg]) -> tuple[list[Message], list[Rejected]]:
        """Each message as an event; one that fails is kept raw, never stops the others."""
        parts = self._parts
        messages: list[Message] = []
        rejected: list[Rejected] = []
        for position, message in enumerate(batch):
            item_id = ""
            try:
                item_id = parts.item_id(message)
                payload = encode_signal(parts.transformer(message))
                messages.append(Message(item_id, payload, parts.dedupe_key(message) or ""))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                self._log.warning("message_rejected", item_id=item_id, position=position,
                                  error=error)
                rejected.append(Rejected(item_id, error, _raw(parts, message)))
        return messages, rejected

    def _state_fields(self, positions: Mapping[str, str]) -> dict[str, str]:
        fields = {"updatedAt": iso_utc(self._clock.time())}
        if positions:
            fields["cursors"] = orjson.dumps(positions).decode()
        return fields

    async def suspend(self) -> None:
        """Let go of the source (the lease is gone, or a commit failed)."""
        if self._started:
            self._started = False
            self._store.invalidate()
            await self._source.stop()
            self._log.info("push_source_stopped")

    async def aclose(self) -> None:
        await self.suspend()


def _moves(saved: Mapping[str, str], positions: Mapping[str, str]) -> bool:
    return any(saved.get(key) != value for key, value in positions.items())


def _raw(parts: PushParts[Any, Any], message: Any) -> bytes:
    try:
        return parts.raw(message)[:REJECTED_RAW_BYTES]
    except Exception:
        return b""


def _summary(received: int, done: Appended, rejected: int) -> PollSummary:
    return PollSummary(fetched=received, published=done.appended,
                       skipped_unchanged=done.duplicates, failed=rejected, pages=1)
