"""Move connectors' keys from one KeyScheme to another (``connector-fleet migrate-keys``).

From the single-server names (``connector:state:NAME``...) to the Cluster's hash-tagged
ones (``connector:state:{NAME}``...), on the same Redis or from another one. Each key is
copied with DUMP + RESTORE (its TTL kept) and then deleted at the source: one command
each, so nothing needs the two keys in one slot.

Idempotent and resumable: a key already moved is absent at the source and is skipped;
a run killed between RESTORE and DEL left the same value at both ends, which the next
run recognises (equal DUMPs) and finishes by deleting the source. A target that exists
with another value is never overwritten: that key is reported as a conflict.

Run it with the fleet stopped: a connector whose lease is held (at either name) is
refused, and the others still move. Leases are not moved (they expire on their own);
output streams neither: consumers drain the old stream (see docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from redis.asyncio import Redis

from framework.core.keys import ConnectorKeys, KeyScheme
from framework.polling.config import ConnectorConfig

MoveOutcome = Literal["moved", "absent", "finished", "conflict"]


@dataclass(frozen=True)
class KeyMove:
    connector: str
    source: str
    target: str


@dataclass
class MigrationReport:
    """What one run did: each key's outcome, and the connectors it refused (why)."""

    outcomes: list[tuple[KeyMove, MoveOutcome]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: MoveOutcome) -> int:
        return sum(1 for _, seen in self.outcomes if seen == outcome)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.count("conflict")


@dataclass(frozen=True)
class Migration:
    """``source`` and ``target`` may be one client (same Redis, new names)."""

    source: Redis
    target: Redis
    from_scheme: KeyScheme
    to_scheme: KeyScheme
    # Called after each key's outcome (progress output; tests stop a run midway).
    on_key: Callable[[KeyMove, MoveOutcome], Awaitable[None]] | None = None

    async def run(self, connectors: Iterable[ConnectorConfig]) -> MigrationReport:
        report = MigrationReport()
        for config in connectors:
            old, new = config.keys(self.from_scheme), config.keys(self.to_scheme)
            holder = await self._lease_holder(old, new)
            if holder is not None:
                report.refused[config.name] = (
                    f"connector {config.name}: its lease is held ({holder}); stop it first"
                )
                continue
            for move in planned_moves(config.name, old, new, same_redis=self.source is self.target):
                outcome = await self.move(move)
                report.outcomes.append((move, outcome))
                if self.on_key is not None:
                    await self.on_key(move, outcome)
        return report

    async def _lease_holder(self, old: ConnectorKeys, new: ConnectorKeys) -> str | None:
        holder = await self.source.get(old.lease) or await self.target.get(new.lease)
        return None if holder is None else str(holder)

    async def move(self, move: KeyMove) -> MoveOutcome:
        """Copy one key to its new name, then delete the old one (see module docstring)."""
        dumped = await self.source.dump(move.source)
        if dumped is None:
            return "absent"
        existing = await self.target.dump(move.target)
        if existing is not None and existing != dumped:
            return "conflict"
        if existing is None:
            ttl_ms = await self.source.pttl(move.source)
            await self.target.restore(move.target, max(ttl_ms, 0), dumped)
        await self.source.delete(move.source)
        return "moved" if existing is None else "finished"


def planned_moves(
    name: str, old: ConnectorKeys, new: ConnectorKeys, *, same_redis: bool
) -> list[KeyMove]:
    """The connector's keys to move (on one Redis: those whose name changes): the item
    versions, then the state hash that holds their generation, then the metrics."""
    pairs = ((old.versions, new.versions), (old.state, new.state), (old.metrics, new.metrics))
    return [
        KeyMove(name, source, target)
        for source, target in pairs
        if source != target or not same_redis
    ]
