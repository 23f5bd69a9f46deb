"""Durability across failover: a commit counts only once N replicas hold it.

Redis replicates asynchronously: a master that dies right after a commit may
take the commit with it, and the replica promoted in its place has neither the
stream entries nor the state that moved with them. ``WAIT n timeout`` on the
connection that wrote blocks until ``n`` replicas have acknowledged every write
of that connection, or the timeout passes. It must run on the same connection
as the commit, so both go in one pipeline (:func:`execute_acknowledged`).

If fewer replicas acknowledge in time, :class:`ReplicasNotAckedError` is raised:
the poll is not counted as published and the state cache is dropped, so the next
poll rereads whatever the (possibly new) master holds and republishes what it
lacks. The write itself is not undone (Redis has no rollback): if the master
survives, the next poll finds it done. WAIT narrows the loss window, it does not
make Redis strongly consistent (a replica that acknowledged may still not be
the one promoted, if Sentinel chooses another with an older offset).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from framework.core import RedisUnavailableError


class ReplicasNotAckedError(RedisUnavailableError):
    """Fewer replicas than required acknowledged a commit in time: not published."""


@dataclass(frozen=True)
class ReplicaAcks:
    """How many replicas must acknowledge each commit (0: do not wait) and for how
    long (REDIS_MIN_REPLICAS_ACKS, REDIS_REPLICAS_ACK_TIMEOUT_MS)."""

    replicas: int = 0
    timeout_ms: int = 1000

    @property
    def required(self) -> bool:
        return self.replicas > 0


async def execute_acknowledged(
    redis: Redis, acks: ReplicaAcks, queue: Callable[[Pipeline], None], *, connector: str
) -> list[Any]:
    """Run the commands ``queue`` adds to a pipeline, then WAIT, on one connection.
    The commands' results (an error among them is returned, not raised, as with
    ``execute(raise_on_error=False)``: the caller reads its message unchanged).
    Raises :class:`ReplicasNotAckedError` when the commands succeeded but fewer
    than ``acks.replicas`` replicas acknowledged them within ``acks.timeout_ms``."""
    async with redis.pipeline(transaction=False) as pipe:
        queue(pipe)
        pipe.wait(acks.replicas, acks.timeout_ms)
        *results, acked = await pipe.execute(raise_on_error=False)
    if any(isinstance(result, Exception) for result in results):
        return results
    check_acks(acked, acks, connector=connector)
    return results


def check_acks(acked: object, acks: ReplicaAcks, *, connector: str) -> None:
    """Raise :class:`ReplicasNotAckedError` unless WAIT's answer ``acked`` reached
    ``acks.replicas`` (an error answer, e.g. from a replica, counts as none)."""
    count = acked if isinstance(acked, int) else 0
    if count < acks.replicas:
        raise ReplicasNotAckedError(
            f"commit acknowledged by {count} of {acks.replicas} required replicas within "
            f"{acks.timeout_ms} ms; not counted as published",
            connector=connector,
        )


def queue_script(
    pipe: Pipeline, script: AsyncScript, keys: Sequence[str], args: Sequence[str | bytes | int]
) -> None:
    """Add an EVALSHA of ``script`` to ``pipe`` (the pipeline loads it if Redis lacks it)."""
    pipe.scripts.add(script)  # type: ignore[arg-type]  # typed for Script; async one works
    pipe.evalsha(script.sha, len(keys), *keys, *args)
