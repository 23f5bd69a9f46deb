"""The ``cdc-postgres`` source: row changes of some tables, from a logical slot.

It *peeks* the slot (``pg_logical_slot_peek_binary_changes``, pgoutput): the
server keeps the changes until the slot is confirmed past them. A batch of
changes goes to the stream with its position (the LSN at the end of its last
transaction) in the fenced append, and only then is the slot moved there
(``pg_replication_slot_advance``). So across a kill -9 at any point:

- before the append: nothing of the batch is in the stream and the slot has not
  moved, so the next peek returns it again;
- after the append, before the slot moved: the saved LSN is ahead of the slot;
  ``start`` moves the slot to it first, so the batch is not read again.

A transaction bigger than a batch is split: the position then names the
transaction and how many of its changes are in the stream (``partial``), the
slot stays before it, and a restart skips those changes of it.

When nothing is captured (idle tables, or only other tables written), the slot
is moved to the server's flushed LSN every ``heartbeatIntervalMs`` through the
same append-then-confirm path, so that it never holds WAL back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from framework.core import Clock, Logger
from framework.polling import Batch, ConnectorConfig
from providers.postgres.lsn import format_lsn, parse_lsn
from providers.postgres.pgoutput import Change, Decoder, Transaction
from providers.postgres.session import Capture, PgSession
from providers.postgres.settings import CdcConfig


@dataclass(frozen=True, slots=True)
class Row:
    """Change ``index`` of ``txn`` (-1: a transaction with nothing captured, which
    only moves the position)."""

    txn: Transaction
    index: int

    @property
    def change(self) -> Change:
        return self.txn.changes[self.index]

    @property
    def last(self) -> bool:
        return self.index == len(self.txn.changes) - 1 or self.index < 0


class CdcSource:
    """A :class:`~framework.polling.PushSource` of row changes (module docstring)."""

    def __init__(self, config: ConnectorConfig, settings: CdcConfig, capture: Capture,
                 clock: Clock, logger: Logger) -> None:
        self._name = config.name
        self._capture = capture
        self._interval_s = config.poll_interval_ms / 1000
        self._deadline_s = config.request_timeout_ms / 1000
        self._heartbeat_s = settings.heartbeat_interval_ms / 1000
        self._tables = frozenset(capture.tables)
        self._clock = clock
        self._log = logger
        self._session: PgSession | None = None
        self.primary_keys: dict[str, list[str]] = {}
        self._decoder = Decoder()
        self._pending: deque[Row] = deque()
        self._slot_at = 0  # where the slot is confirmed
        self._complete = 0  # end of the last whole transaction handed out
        self._owed = 0  # a position in the stream the slot has not been moved to
        self._skip: tuple[int, int] = (0, 0)  # (transaction, changes already appended)
        self._next_peek = 0.0
        self._next_heartbeat = 0.0

    async def start(self, positions: Mapping[str, str]) -> None:
        session = PgSession(self._capture, connector=self._name, deadline_s=self._deadline_s,
                            logger=self._log)
        self._session = session
        self._slot_at = await session.open()
        self.primary_keys = session.primary_keys
        saved = parse_lsn(positions["lsn"]) if positions.get("lsn") else 0
        if saved > self._slot_at:
            # The last batch reached the stream but the slot was not moved after it.
            self._log.info("cdc_slot_caught_up", slot=self._capture.slot,
                           slot_lsn=format_lsn(self._slot_at), saved_lsn=format_lsn(saved))
            await session.advance(saved)
            self._slot_at = saved
        elif saved and saved < self._slot_at:
            # Only the connector moves its slot, and only to saved positions: someone
            # else moved it, or dropped and created it. What lay between is gone.
            self._log.warning("cdc_slot_ahead_of_saved_position", slot=self._capture.slot,
                              slot_lsn=format_lsn(self._slot_at), saved_lsn=format_lsn(saved))
        self._complete, self._owed = self._slot_at, 0
        self._skip = _partial(positions.get("partial", ""))
        self._decoder = Decoder()
        self._pending.clear()
        self._next_peek = 0.0
        self._next_heartbeat = self._clock.monotonic() + self._heartbeat_s

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Row]:
        if not self._pending:
            heartbeat = await self._peek(max_messages, wait_s)
            if heartbeat:
                return Batch((), {"lsn": format_lsn(heartbeat), "partial": ""})
        rows: list[Row] = []
        taken: Row | None = None
        while self._pending and len(rows) < max_messages:
            taken = self._pending.popleft()
            if taken.index >= 0:
                rows.append(taken)
            if taken.last:
                self._complete = taken.txn.commit_lsn
        if taken is None:
            return Batch()
        partial = "" if taken.last else f"{format_lsn(taken.txn.commit_lsn)}:{taken.index + 1}"
        return Batch(rows, {"lsn": format_lsn(self._complete), "partial": partial})

    async def _peek(self, max_messages: int, wait_s: float) -> int:
        """Fill the pending rows from the slot; a position to move an idle slot to
        (0: none)."""
        session = self._open_session()
        if self._owed:  # never peek before the slot is where the stream is
            await session.advance(self._owed)
            self._slot_at, self._owed = self._owed, 0
        now = self._clock.monotonic()
        if now < self._next_peek:
            await self._clock.sleep(min(wait_s, self._next_peek - now))
            if self._clock.monotonic() < self._next_peek:
                return 0
        heartbeat_due = self._clock.monotonic() >= self._next_heartbeat
        current = await session.flushed_lsn() if heartbeat_due else 0
        peeked = await session.peek(max_messages)
        transactions = self._decoder.decode(peeked)
        # A peek that found something is followed by the next at once (a burst is
        # read without pauses); one that found nothing waits pollIntervalMs.
        self._next_peek = 0.0 if peeked else self._clock.monotonic() + self._interval_s
        for txn in transactions:
            self._queue(txn)
        if transactions or not heartbeat_due:
            return 0
        # Nothing committed before ``current`` is captured: the slot may move there.
        self._next_heartbeat = self._clock.monotonic() + self._heartbeat_s
        return current if current > self._slot_at else 0

    def _queue(self, txn: Transaction) -> None:
        if txn.commit_lsn <= self._slot_at:
            return
        first = self._skip[1] if txn.commit_lsn == self._skip[0] else 0
        kept = [Row(txn, i) for i, change in enumerate(txn.changes)
                if i >= first and change.relation.table in self._tables]
        # The position must reach the end of the transaction even when none of
        # its last changes is captured.
        if not kept or not kept[-1].last:
            kept.append(Row(txn, -1))
        self._pending.extend(kept)

    async def acknowledge(self, batch: Batch[Row]) -> None:
        lsn = parse_lsn(batch.positions.get("lsn", "0/0"))
        if lsn <= self._slot_at:
            return
        self._owed = lsn
        try:
            await self._open_session().advance(lsn)
        except Exception as exc:
            # In the stream and saved: the next peek moves the slot first (and a
            # restart from the saved position does too).
            self._log.warning("cdc_slot_advance_failed", slot=self._capture.slot,
                              lsn=format_lsn(lsn), error=str(exc))
            return
        self._slot_at, self._owed = lsn, 0

    async def stop(self) -> None:
        session, self._session = self._session, None
        self._pending.clear()
        if session is not None:
            await session.close()

    def _open_session(self) -> PgSession:
        if self._session is None:
            raise RuntimeError("cdc-postgres source used before start")
        return self._session


def _partial(text: str) -> tuple[int, int]:
    """``LSN:n`` (n changes of the transaction ending at LSN are in the stream)."""
    if not text:
        return (0, 0)
    lsn, _, count = text.rpartition(":")
    return (parse_lsn(lsn), int(count))
