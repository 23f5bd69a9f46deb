"""The "limit" of ``bench consume`` (a child process): the least a Redis Streams
consumer can do per event, with the same client library. One loop: XREADGROUP of
up to MAX_IN_FLIGHT entries (block 100 ms, as connector-fleet's reads), the
event's JSON parsed for its send stamp, then one XACK for the whole batch. No
rules, no capability, no record, no concurrency: what no framework can beat.

``python -m worker.bench.limit REDIS_URL MAX_IN_FLIGHT [NAME]``; SIGTERM stops it (NAME,
given by the bench to every local worker, is not used: one loop, one consumer).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from framework.core import cancel_and_wait, configure_logging, create_redis
from worker.bench.completions import Completions
from worker.bench.load import STREAM
from worker.runtime import run_event_loop

GROUP = "bench-limit"
_BLOCK_MS = 100
# XREADGROUP's reply with decoded responses: [(stream, [(entry id, fields)])].
StreamReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]


async def _create_group(redis: Redis) -> None:
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _consume(
    redis: Redis, count: int, completions: Completions, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        reply = cast(
            StreamReply,
            await redis.xreadgroup(GROUP, "limit-1", {STREAM: ">"}, count=count, block=_BLOCK_MS),
        )
        for _, entries in reply or ():
            for _, fields in entries:
                completions.stamp(orjson.loads(fields["event"])["payload"]["sent_ms"])
            await redis.xack(STREAM, GROUP, *(entry_id for entry_id, _ in entries))


async def serve(url: str, max_in_flight: int) -> int:
    redis = create_redis(url, client_name="bench-limit")
    await _create_group(redis)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    completions = Completions(redis)
    writer = asyncio.create_task(completions.write_forever())
    try:
        await _consume(redis, max_in_flight, completions, stopping)
    finally:
        await cancel_and_wait(writer)
        await completions.write()
        await redis.aclose()
    return 0


if __name__ == "__main__":
    configure_logging("WARNING")
    sys.exit(run_event_loop(serve(sys.argv[1], int(sys.argv[2]))))
