"""``bench sources --source cron``: how late each tick of an every-second schedule
(``* * * * * *``) lands in the stream, through ``cron-trigger`` (its windows back to
back as the worker runs them; each tick made an event and appended with the last
tick, fenced) against a bare loop doing the least the same job needs (sleep until
the next whole second, XADD).

A tick's lateness is the stream entry's time (Redis's clock, in ms) minus the
tick's scheduled time; both run on this machine's clock. ``ticks`` ticks each, one
system after the other; rows give p50 and p99 in ms (lower is better, so there is
no ratio). With ``ticks`` well under 100, p99 is close to the worst tick.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.core import create_redis
from framework.polling import ConnectorConfig
from providers.cron import create_cron_connector
from worker.bench.leased import fresh_connector_context
from worker.bench.stats import Row, percentile

STREAM = "raw-input-signals"
EVERY_SECOND = "* * * * * *"


def measure(params: Row) -> list[Row]:
    ticks = int(params["ticks"])
    late = asyncio.run(_measure(ticks, params["redis_url"]))
    connector, bare = late
    return [{"mode": name, "ticks": ticks, "rate": percentile(connector, q),
             "bare_rate": percentile(bare, q), "ratio": None}
            for name, q in (("p50", 50), ("p99", 99))]


async def _measure(ticks: int, redis_url: str) -> tuple[list[float], list[float]]:
    redis = create_redis(redis_url)
    try:
        await redis.delete(STREAM)
        connector = await _connector_lateness(redis, ticks)
        await redis.delete(STREAM)
        bare = await _bare_lateness(redis, ticks)
    finally:
        await redis.aclose()
    return connector, bare


def _entry_ms(entry_id: Any) -> int:
    """The millisecond part of a stream entry id (``1700000000123-0``)."""
    return int(str(entry_id).split("-", 1)[0])


async def _connector_lateness(redis: Redis, ticks: int) -> list[float]:
    config = ConnectorConfig.model_validate({
        "name": "bench-cron", "type": "cron-trigger", "pollIntervalMs": 1000,
        "providerConfig": {"expression": EVERY_SECOND, "payload": {"job": "bench"}}})
    context = await fresh_connector_context(redis, config, (":seen",))
    connector: Any = create_cron_connector(config, context)
    try:
        async with asyncio.timeout(ticks + 30):
            while await redis.xlen(STREAM) < ticks:
                await connector.poll()
    finally:
        await connector.aclose()
    lateness: list[float] = []
    entries = await redis.xrange(STREAM) or []
    for entry_id, fields in entries[:ticks]:
        event = orjson.loads((fields or {})["payload"])
        scheduled = datetime.fromisoformat(event["metadata"]["scheduledAt"])
        lateness.append(_entry_ms(entry_id) - scheduled.timestamp() * 1000)
    return lateness


async def _bare_lateness(redis: Redis, ticks: int) -> list[float]:
    lateness: list[float] = []
    for _ in range(ticks):
        tick = math.floor(time.time()) + 1
        await asyncio.sleep(tick - time.time())
        entry_id = await redis.xadd(STREAM, {"tick": str(tick)})
        lateness.append(_entry_ms(entry_id) - tick * 1000)
    return lateness
