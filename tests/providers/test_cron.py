"""cron-trigger on real Redis and a fake clock: one event per tick, exactly once
across restarts and a lost lease; missed ticks follow catchUp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import ConfigError, LeaseLostError
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import FakeClock
from providers.cron import create_cron_connector

STREAM = "raw-input-signals"
# 2027-01-15T08:00:00Z, a Friday.
START_S = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()


def config(**provider: Any) -> ConnectorConfig:
    return ConnectorConfig(name="nightly", type="cron-trigger", lease_ttl_seconds=30,
                           provider_config={"expression": "* * * * *", **provider})


class Instance:
    """One connector process: its lease, its connector, and a task running windows."""

    def __init__(self, redis: Redis, clock: FakeClock, settings: ConnectorConfig) -> None:
        self.redis, self.clock, self.settings = redis, clock, settings
        self.lease = Lease(redis, settings.name, ttl_s=30)
        store = StateStore(redis, settings, self.lease, clock=clock)
        context = ConnectorContext(store=store, clock=clock, logger=get_logger(connector="cron"))
        self.connector = create_cron_connector(settings, context)
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        assert await self.lease.try_acquire()
        self.task = asyncio.create_task(self._windows())

    async def _windows(self) -> None:
        while True:
            await self.connector.poll()

    async def kill(self) -> None:
        """As kill -9: nothing is flushed; the lease key is dropped so the next takes over."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.redis.delete(self.lease.key)


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    yield FakeClock(start_s=START_S)


async def advance(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        await clock.until_sleeping(1)
        await clock.advance(step)
    await clock.until_sleeping(1)


async def ticks(redis: Redis) -> list[str]:
    return [fields["item_id"] for _, fields in await redis.xrange(STREAM)]


async def test_one_event_per_tick_with_its_schedule_in_the_event(
    redis: Redis, clock: FakeClock,
) -> None:
    instance = Instance(redis, clock, config(payload={"job": "report"}))
    await instance.run()

    await advance(clock, 180)

    assert await ticks(redis) == ["2027-01-15T08:01:00+00:00", "2027-01-15T08:02:00+00:00",
                                  "2027-01-15T08:03:00+00:00"]
    payload = orjson.loads((await redis.xrange(STREAM))[0][1]["payload"])
    assert payload["value"] == {"job": "report"} and payload["source"] == "cron"
    assert payload["nodeId"] == "nightly"
    assert payload["timestamp"] == "2027-01-15T08:01:00+00:00"
    assert payload["metadata"]["lateMs"] < 1000
    await instance.kill()


async def test_the_expression_is_read_in_its_timezone(redis: Redis, clock: FakeClock) -> None:
    instance = Instance(redis, clock, config(expression="5 9 * * *", timezone="Europe/Paris"))
    await instance.run()

    await advance(clock, 3600, step=60)  # 09:05 in Paris is 08:05 UTC in January

    assert await ticks(redis) == ["2027-01-15T08:05:00+00:00"]
    await instance.kill()


@pytest.mark.parametrize(("policy", "expected"), [
    ("none", []),
    ("last", ["08:06"]),
    ("all", ["08:02", "08:03", "08:04", "08:05", "08:06"]),
])  # 08:07 fires too: it is 1 s late, within the misfire grace
async def test_ticks_missed_while_down_follow_catch_up(
    redis: Redis, clock: FakeClock, policy: str, expected: list[str],
) -> None:
    first = Instance(redis, clock, config(catchUp=policy))
    await first.run()
    await advance(clock, 61)  # 08:01 fires
    await first.kill()
    await clock.advance(5 * 60 + 61)  # 08:02 .. 08:06 pass, each > 60 s before the restart

    second = Instance(redis, clock, config(catchUp=policy))
    await second.run()
    await advance(clock, 1)

    fired = await ticks(redis)
    assert fired == ["2027-01-15T08:01:00+00:00"] + [f"2027-01-15T{t}:00+00:00"
                                                     for t in [*expected, "08:07"]]
    await advance(clock, 60)  # and it goes on from the next tick, once
    assert (await ticks(redis))[-1] == "2027-01-15T08:08:00+00:00"
    assert len(await ticks(redis)) == len(set(await ticks(redis)))
    await second.kill()


async def test_catch_up_all_is_capped_to_the_latest_ticks(redis: Redis, clock: FakeClock) -> None:
    first = Instance(redis, clock, config(catchUp="all", catchUpMax=3,
                                          expression="* * * * * */1"))
    await first.run()
    await advance(clock, 1)
    await first.kill()
    await clock.advance(30 * 24 * 3600)  # a month of every-second ticks missed

    second = Instance(redis, clock, config(catchUp="all", catchUpMax=3,
                                           expression="* * * * * */1"))
    await second.run()
    await clock.until_sleeping(1)

    assert len(await ticks(redis)) == 1 + 3
    await second.kill()


async def test_a_tick_refused_by_a_lost_lease_fires_once_when_the_lease_comes_back(
    redis: Redis, clock: FakeClock,
) -> None:
    instance = Instance(redis, clock, config())
    await instance.run()
    await advance(clock, 61)  # 08:01 fires and is saved
    await redis.set(instance.lease.key, "someone-else")
    assert instance.task is not None
    while not instance.task.done():  # 08:02 comes due; its commit is refused
        await clock.until_sleeping(1)
        await clock.advance(0.5)
        await asyncio.sleep(0.01)
    assert isinstance(instance.task.exception(), LeaseLostError)

    await redis.set(instance.lease.key, instance.lease.token)
    instance.task = asyncio.create_task(instance._windows())
    await advance(clock, 1)  # within the misfire grace: late, not missed

    assert await ticks(redis) == ["2027-01-15T08:01:00+00:00", "2027-01-15T08:02:00+00:00"]
    await instance.kill()


async def test_a_tick_older_than_the_grace_follows_catch_up_none(
    redis: Redis, clock: FakeClock,
) -> None:
    first = Instance(redis, clock, config(misfireGraceMs=10_000))
    await first.run()
    await advance(clock, 61)
    await first.kill()
    await clock.advance(60 + 30)  # 08:02 is 30 s old when the next instance starts

    second = Instance(redis, clock, config(misfireGraceMs=10_000))
    await second.run()
    await advance(clock, 1)

    assert await ticks(redis) == ["2027-01-15T08:01:00+00:00"]
    await second.kill()


@pytest.mark.parametrize(("provider", "message"), [
    ({"expression": "61 * * * *"}, "providerConfig.expression: Value error, not a cron"),
    ({"timezone": "Mars/Olympus"}, "providerConfig.timezone: Value error, unknown IANA"),
    ({"catchUp": "some"}, "providerConfig.catchUp"),
    ({"catchUpMax": 0}, "providerConfig.catchUpMax"),
])
async def test_config_errors_name_the_field(
    redis: Redis, clock: FakeClock, provider: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ConfigError, match="cron-trigger connector nightly: ") as raised:
        Instance(redis, clock, config(**provider))
    assert message in str(raised.value)
