"""Where a new consumer group starts is explicit: validated, recorded when the group is
created, and shown by ``connector-fleet consumers``."""

from __future__ import annotations

import io

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming.consumer import ConsumerOptions
from framework.core.errors import ConfigError
from tests.consuming.test_consumer import GROUP, STREAM, Recorder, add, running, until
from worker.cli.consumers import show_consumers
from worker.cli.output import Console
from worker.ops import read_consumer_groups


def test_a_start_id_that_is_not_dollar_zero_or_an_entry_id_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"start_id must be '\$', '0' or an entry id"):
        ConsumerOptions(streams=(STREAM,), start_id="latest")
    assert ConsumerOptions(streams=(STREAM,), start_id="1700000000000-3").start_id


async def test_a_new_group_at_dollar_records_where_it_started_and_consumers_shows_it(
    redis: Redis,
) -> None:
    [before] = await add(redis, 1)
    recorder = Recorder()
    async with running(redis, recorder, start_id="$"):
        await until(lambda: _group_exists(redis))
        [after] = await add(redis, 1)
        await until(lambda: len(recorder.finished) == 1)
    assert recorder.ids() == [after]  # the entry from before the group never ran

    [group] = await read_consumer_groups(redis, streams=[STREAM])
    assert (group.start_id, group.started_at_id) == ("$", before)
    out = io.StringIO()
    await show_consumers(redis, Console(out=out), streams=None, as_json=True)
    [shown] = orjson.loads(out.getvalue())
    assert (shown["startId"], shown["startedAtId"]) == ("$", before)
    table = io.StringIO()
    await show_consumers(redis, Console(out=table), streams=None, as_json=False)
    assert "START" in table.getvalue() and f"$@{before}" in table.getvalue()


async def test_a_group_created_elsewhere_shows_an_unknown_start(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    [group] = await read_consumer_groups(redis, streams=[STREAM])
    assert group.start_id is None
    table = io.StringIO()
    await show_consumers(redis, Console(out=table), streams=None, as_json=False)
    assert "unknown" in table.getvalue()


async def _group_exists(redis: Redis) -> bool:
    return bool(await redis.exists(STREAM)) and bool(await redis.xinfo_groups(STREAM))
