"""The baselines of ``bench publish``: the same writes as a poll's fenced commit, per
item an XADD to the output stream and an HSET of its version, without the framework.

* bare Lua script: ``lua/bare_publish.lua``, one call per chunk of 5,000 items (as
  the fenced commit chunks), the XADD and the HSET of ``commit.lua`` and nothing else;
* sync pipeline: plain redis-py (blocking client), the same commands pipelined, one
  round trip per chunk.

Payloads and versions are encoded before the clock starts: the baselines time only
the writes; the poll's time includes its diff, transform and encoding.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis as sync_redis

from framework.core import lua

# The fenced commit's chunk (framework.core.keys.COMMIT_CHUNK_ITEMS, internal to core).
CHUNK_ITEMS = 5_000
STREAM = "bench-baseline"
VERSIONS = "bench-baseline:versions"


@dataclass(frozen=True)
class Item:
    item_id: str
    version: str
    payload: bytes


def items_from_payloads(payloads: list[bytes]) -> list[Item]:
    return [
        Item(f"item-{i}", hashlib.blake2b(p, digest_size=12).hexdigest(), p)
        for i, p in enumerate(payloads)
    ]


def _chunks(items: list[Item]) -> list[list[Item]]:
    return [items[i : i + CHUNK_ITEMS] for i in range(0, len(items), CHUNK_ITEMS)]


def bare_lua_seconds(client: sync_redis.Redis, items: list[Item], max_len: int) -> float:
    """Seconds to publish ``items`` through the bare script, on a flushed database."""
    client.flushdb()
    script = client.register_script(lua("worker.bench", "bare_publish"))
    script(keys=[STREAM, VERSIONS], args=[max_len, "bench", "BENCH"])  # loaded before timing
    started = time.perf_counter()
    for chunk in _chunks(items):
        args: list[str | bytes | int] = [max_len, "bench", "BENCH"]
        for item in chunk:
            args += (item.item_id, item.version, item.payload)
        script(keys=[STREAM, VERSIONS], args=args)
    seconds = time.perf_counter() - started
    _check_published(client, len(items))
    return seconds


def sync_pipeline_seconds(client: sync_redis.Redis, items: list[Item], max_len: int) -> float:
    """Seconds to publish ``items`` with plain pipelined commands, on a flushed database."""
    client.flushdb()
    started = time.perf_counter()
    for chunk in _chunks(items):
        with client.pipeline(transaction=False) as pipe:
            for item in chunk:
                pipe.xadd(
                    STREAM,
                    {
                        "connector": "bench",
                        "type": "BENCH",
                        "item_id": item.item_id,
                        "version": item.version,
                        "payload": item.payload,
                    },
                    maxlen=max_len,
                    approximate=True,
                )
                pipe.hset(VERSIONS, item.item_id, item.version)
            pipe.execute()
    seconds = time.perf_counter() - started
    _check_published(client, len(items))
    return seconds


def _check_published(client: sync_redis.Redis, expected: int) -> None:
    published = client.xlen(STREAM)
    if published != expected or client.hlen(VERSIONS) != expected:
        raise RuntimeError(
            f"bench publish baseline: {published} of {expected} items in "
            f"{STREAM}, {client.hlen(VERSIONS)} versions in {VERSIONS}"
        )
