"""Durability across failover: a commit counts only once N replicas hold it.

Redis replicates asynchronously: a master that dies right after a commit may
take the commit with it, and the replica promoted in its place has neither the
stream entries nor the state that moved with them. ``WAIT n timeout`` on the
connection that wrote blocks until ``n`` replicas have acknowledged every write
of that connection, or the timeout passes. It must run on the same connection
as the commit: the commit's channel runs it after the last chunk's reply
(:mod:`framework.polling.commit_session`).

If fewer replicas acknowledge in time, :class:`ReplicasNotAckedError` is raised:
the poll is not counted as published and the state cache is dropped, so the next
poll rereads whatever the (possibly new) master holds and republishes what it
lacks. The write itself is not undone (Redis has no rollback): if the master
survives, the next poll finds it done. WAIT narrows the loss window, it does not
make Redis strongly consistent (a replica that acknowledged may still not be
the one promoted, if Sentinel chooses another with an older offset).
"""

from __future__ import annotations

from dataclasses import dataclass

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
