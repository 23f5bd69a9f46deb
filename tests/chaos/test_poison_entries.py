"""Entries that are not UTF-8 (anyone who can XADD can write one) are dead-lettered
with their raw bytes; they never stop the group: not on a read, not through the
pending list at a restart, not through another consumer's XAUTOCLAIM."""

from __future__ import annotations

import base64

import orjson
from redis.asyncio import Redis

from framework.consuming.dead_letters import DeadLetterStream
from tests.consuming.test_consumer import GROUP, STREAM, Recorder, add, pending, running, until

_BAD = b'{"type":"t.call","payload":{"n":"\xff\xfe"}}'


async def _add_poison(redis: Redis) -> str:
    return str(await redis.xadd(STREAM, {"n": "bad", "event": _BAD}))


async def _letters_are(letters: DeadLetterStream, count: int) -> bool:
    return await letters.count() == count


async def test_a_non_utf8_entry_is_dead_lettered_with_its_bytes_and_the_others_run(
    redis: Redis,
) -> None:
    good = await add(redis, 5)
    bad = await _add_poison(redis)
    good += await add(redis, 5)
    recorder = Recorder()
    letters = DeadLetterStream(redis, STREAM)
    async with running(redis, recorder):
        await until(lambda: len(recorder.finished) == 10)
        await until(lambda: _letters_are(letters, 1))
    assert sorted(recorder.ids()) == sorted(good)
    assert await pending(redis) == 0
    [letter] = await letters.read()
    assert letter.entry_id == bad and letter.error_type == "UndecodableEntry"
    assert f"stream {STREAM!r}" in letter.reason and bad in letter.reason
    assert "field 'event'" in letter.reason
    raw = orjson.loads(letter.raw_fields or "[]")
    assert [base64.b64decode(part) for part in raw] == [b"n", b"bad", b"event", _BAD]


async def test_a_non_utf8_entry_left_pending_is_dead_lettered_through_xautoclaim(
    redis: Redis,
) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    bad = await _add_poison(redis)
    good = await add(redis, 3)
    # A consumer read them (raw bytes are no problem to it) and died: all pending.
    await redis.execute_command("XREADGROUP", "GROUP", GROUP, "crashed", "STREAMS",
                                STREAM, ">", NEVER_DECODE=True)
    recorder = Recorder()
    letters = DeadLetterStream(redis, STREAM)
    async with running(redis, recorder, claim_idle_ms=100):
        await until(lambda: len(recorder.finished) == 3)
        await until(lambda: _letters_are(letters, 1))
    assert sorted(recorder.ids()) == sorted(good)
    [letter] = await letters.read()
    assert letter.entry_id == bad and await pending(redis) == 0


async def test_a_non_utf8_stream_entry_key_is_named_in_the_reason(redis: Redis) -> None:
    bad = str(await redis.xadd(STREAM, {b"\xc3\x28": b"x"}))
    letters = DeadLetterStream(redis, STREAM)
    async with running(redis, Recorder()):
        await until(lambda: _letters_are(letters, 1))
    [letter] = await letters.read()
    assert letter.entry_id == bad and "field b'\\xc3(' (name)" in letter.reason
