"""Redis Cluster hash slots: which keys one command or script may touch together.

A cluster node runs a script or a transaction only when every key it names hashes to
one slot, and a cluster client refuses several streams of different slots in one
XREADGROUP. A key's slot is CRC16 of its hash tag (the first non-empty ``{...}``) or
of the whole key. These helpers let the consumers group their keys by slot on a
cluster, and send them together, as before, on one server (where slots do not exist).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot


def is_cluster(redis: Any) -> bool:
    """``redis`` is a cluster client (framework.core.redis_clients made it for a
    ``redis+cluster://`` URL): multi-key commands must stay within one slot."""
    return isinstance(redis, RedisCluster)


def slot_of(key: str) -> int:
    return key_slot(key.encode())


def hash_tag(key: str) -> str:
    """The part of ``key`` its slot is computed from: its hash tag, or all of it."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def same_slot(keys: Iterable[str]) -> bool:
    return len({slot_of(key) for key in keys}) <= 1


def slot_groups(keys: Sequence[str], *, cluster: bool) -> list[list[int]]:
    """The positions of ``keys`` grouped by slot, in first-seen order; one group of
    all of them when ``cluster`` is False (one server holds every slot)."""
    if not cluster:
        return [list(range(len(keys)))] if keys else []
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(index)
    return list(groups.values())


def check_same_slot(what: str, keys: Sequence[str]) -> None:
    """ValueError naming ``what`` and each key's slot unless they share one."""
    if not same_slot(keys):
        slots = ", ".join(f"{key} -> {slot_of(key)}" for key in keys)
        raise ValueError(f"{what}: its keys hash to different Cluster slots ({slots}); "
                         "give them one hash tag, e.g. name the stream {STREAM}")
