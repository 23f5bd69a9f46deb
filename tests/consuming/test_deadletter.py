"""Dead-letter streams on a real Redis: written once with the acknowledgement,
listed, shown, replayed atomically and purged (also through the dlq commands)."""

from __future__ import annotations

import io

from redis.asyncio import Redis

from framework.consuming.dead_letters import DeadLetterStream, Failure
from framework.consuming.delivery import Delivery
from framework.core.keys import consumer_errors_key
from worker.cli.dead_letters import DeadLetterCommands
from worker.cli.output import Console

STREAM = "events"
GROUP = "workers"


async def delivered(redis: Redis, fields: dict[str, str]) -> Delivery:
    """Add an entry and deliver it to consumer c1 (pending, not acknowledged)."""
    entry_id = str(await redis.xadd(STREAM, fields))
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await redis.xreadgroup(GROUP, "c1", {STREAM: ">"})
    return Delivery(STREAM, entry_id, fields, GROUP, "c1", 3)


FAILURE = Failure(reason="payload.value: not a number", error_type="InvalidEventError",
                  attempts=3, rule="close-valve", step="call-1")


async def test_writing_acknowledges_and_never_writes_twice(redis: Redis) -> None:
    delivery = await delivered(redis, {"b": "2", "a": "1"})
    await redis.hset(consumer_errors_key(GROUP, STREAM), delivery.entry_id, "{}")
    letters = DeadLetterStream(redis, STREAM)

    first = await letters.write(delivery, FAILURE, at_s=1_700_000_000.0)
    second = await letters.write(delivery, FAILURE, at_s=1_700_000_001.0)

    assert first is not None and second is None
    assert await letters.count() == 1
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert not await redis.hexists(consumer_errors_key(GROUP, STREAM), delivery.entry_id)
    letter = await letters.get(first)
    assert letter is not None
    assert (letter.stream, letter.entry_id, letter.attempts) == (STREAM, delivery.entry_id, 3)
    assert (letter.reason, letter.error_type) == (FAILURE.reason, FAILURE.error_type)
    assert (letter.rule, letter.step, letter.consumer) == ("close-valve", "call-1", "c1")
    assert letter.dead_lettered_at == "2023-11-14T22:13:20.000Z"
    assert list(letter.fields.items()) == [("b", "2"), ("a", "1")]


async def test_an_entry_nobody_holds_is_not_dead_lettered(redis: Redis) -> None:
    delivery = await delivered(redis, {"a": "1"})
    await redis.xack(STREAM, GROUP, delivery.entry_id)  # settled by another consumer
    letters = DeadLetterStream(redis, STREAM)
    assert await letters.write(delivery, FAILURE, at_s=0.0) is None
    assert await letters.count() == 0


async def test_replay_re_adds_the_original_fields_and_removes_the_letter(redis: Redis) -> None:
    delivery = await delivered(redis, {"payload": '{"v": 1}', "connector": "noaa"})
    letters = DeadLetterStream(redis, STREAM)
    letter_id = await letters.write(delivery, FAILURE, at_s=0.0)
    assert letter_id is not None

    new_id = await letters.replay(letter_id)

    assert new_id is not None
    [(entry_id, fields)] = await redis.xrange(STREAM, min=new_id)
    assert entry_id == new_id
    # In their order, then the id of the entry it replays (its steps' identity).
    assert list(fields.items()) == [*delivery.fields.items(),
                                    ("replay_of", delivery.entry_id)]
    assert await letters.count() == 0
    assert await letters.replay(letter_id) is None  # a second replay finds nothing
    assert await redis.xlen(STREAM) == 2


async def test_read_pages_oldest_first_and_purge_deletes_all(redis: Redis) -> None:
    letters = DeadLetterStream(redis, STREAM, name="custom-dlq")
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ids = []
    for i in range(5):
        entry_id = str(await redis.xadd(STREAM, {"n": str(i)}))
        await redis.xreadgroup(GROUP, "c1", {STREAM: ">"})
        delivery = Delivery(STREAM, entry_id, {"n": str(i)}, GROUP, "c1")
        ids.append(await letters.write(delivery, FAILURE, at_s=0.0))
    first_page = await letters.read(count=2)
    second_page = await letters.read(count=10, after=first_page[-1].id)
    assert [letter.id for letter in first_page + second_page] == ids
    assert [letter.fields["n"] for letter in second_page] == ["2", "3", "4"]
    assert await redis.xlen("custom-dlq") == 5

    assert await letters.purge() == 5
    assert await letters.count() == 0


def console() -> tuple[Console, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Console(out=out, err=err), out, err


async def test_dlq_commands_list_show_replay_and_confirm_a_purge(redis: Redis) -> None:
    delivery = await delivered(redis, {"n": "0"})
    letter_id = await DeadLetterStream(redis, STREAM).write(delivery, FAILURE, at_s=0.0)
    assert letter_id is not None
    terminal, out, err = console()
    commands = DeadLetterCommands(redis, terminal, STREAM)

    assert await commands.list_letters(count=10, after=None, as_json=False) == 0
    assert "attempts=3" in out.getvalue() and FAILURE.reason in out.getvalue()
    assert await commands.show("0-1") == 1
    assert "no dead letter 0-1" in err.getvalue()
    assert await commands.purge(confirm=lambda _: False) == 1
    assert "not purged" in err.getvalue()
    assert await redis.xlen(f"{STREAM}:dlq") == 1

    assert await commands.replay([letter_id, "0-1"], every=False) == 1  # one was missing
    assert f"replayed {letter_id} to {STREAM}" in out.getvalue()
    assert await redis.xlen(f"{STREAM}:dlq") == 0
