"""The stream consumer on a real Redis: bounded in-flight work, acknowledgement after
completion, reclaim, heartbeats, dead letters, per-key ordering and draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming.consumer import Consumer, ConsumerOptions, order_key
from framework.consuming.dead_letters import DeadLetterStream
from framework.consuming.delivery import AckWrite, Delivery
from framework.consuming.group import GroupMember
from framework.core.clock import SystemClock
from framework.core.errors import ConfigError, DeadLetterError
from framework.core.logs import get_logger

STREAM = "events"
GROUP = "workers"

Handle = Callable[[Delivery], Awaitable[None]]


class Recorder:
    """An EventHandler running ``behaviour`` and recording calls and concurrency."""

    def __init__(self, behaviour: Handle | None = None) -> None:
        self.behaviour = behaviour
        self.calls: list[Delivery] = []
        self.finished: list[Delivery] = []
        self.running = 0
        self.max_running = 0

    async def handle(self, delivery: Delivery) -> None:
        self.calls.append(delivery)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.behaviour is not None:
                await self.behaviour(delivery)
        finally:
            self.running -= 1
        self.finished.append(delivery)

    def ids(self) -> list[str]:
        return [d.entry_id for d in self.finished]


@asynccontextmanager
async def running(redis: Redis, handler: Any, **options: Any) -> AsyncIterator[Consumer]:
    settings: dict[str, Any] = {"streams": (STREAM,), "group": GROUP, "consumer": "c1",
                                "start_id": "0", "block_ms": 50, **options}
    consumer = Consumer(redis, handler, ConsumerOptions(**settings), clock=SystemClock(),
                        logger=get_logger(test="consumer"))
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)


async def add(redis: Redis, count: int, stream: str = STREAM, **fields: str) -> list[str]:
    return [str(await redis.xadd(stream, {"n": str(i), **fields})) for i in range(count)]


async def until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await _value(predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _value(result: Any) -> Any:
    return await result if asyncio.iscoroutine(result) else result


async def pending(redis: Redis, stream: str = STREAM) -> int:
    return int((await redis.xpending(stream, GROUP))["pending"])


async def test_acknowledges_only_after_the_handler_returned(redis: Redis) -> None:
    release = asyncio.Event()

    async def wait(_: Delivery) -> None:
        await release.wait()

    recorder = Recorder(wait)
    ids = await add(redis, 3)
    async with running(redis, recorder):
        await until(lambda: len(recorder.calls) == 3)
        assert await pending(redis) == 3  # read and running, not acknowledged
        release.set()
        await until(lambda: len(recorder.finished) == 3)
        await until(lambda: _is_zero(redis))
    assert sorted(recorder.ids()) == sorted(ids)
    assert await pending(redis) == 0


async def _is_zero(redis: Redis) -> bool:
    return await pending(redis) == 0


class Recording:
    """An EventHandler returning one record to write with the acknowledgement."""

    def __init__(self, before_return: Callable[[], None] | None = None) -> None:
        self.before_return = before_return
        self.calls: list[Delivery] = []

    async def handle(self, delivery: Delivery) -> list[AckWrite]:
        self.calls.append(delivery)
        if self.before_return is not None:
            self.before_return()
        return [AckWrite(f"done:{delivery.entry_id}", "step", f"result of {delivery.entry_id}",
                         ttl_s=600)]


async def test_what_the_handler_returns_is_written_by_the_acknowledgement(
    redis: Redis,
) -> None:
    ids = await add(redis, 5)
    recording = Recording()
    async with running(redis, recording):
        await until(lambda: len(recording.calls) == 5)
        await until(lambda: _is_zero(redis))
    for entry_id in ids:
        assert await redis.hget(f"done:{entry_id}", "step") == f"result of {entry_id}"
        assert 0 < await redis.ttl(f"done:{entry_id}") <= 600


async def test_the_records_are_written_even_if_another_consumer_settled_the_entry(
    redis: Redis,
) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    [entry_id] = await add(redis, 1)
    slow = GroupMember(redis, group=GROUP, consumer="slow", dead_letter_streams={})
    [(_, _, fields)] = await slow.read([STREAM], count=1, block_ms=10)
    await redis.xclaim(STREAM, GROUP, "fast", 0, [entry_id])  # taken over meanwhile
    await redis.xack(STREAM, GROUP, entry_id)
    write = AckWrite(f"done:{entry_id}", "step", "done by slow", ttl_s=60)

    acked = await slow.ack([(slow.delivery(STREAM, entry_id, fields, 1), [write])])

    assert acked == [False]  # not ours to acknowledge any more...
    assert await redis.hget(f"done:{entry_id}", "step") == "done by slow"  # ...but it ran


async def test_never_more_than_max_in_flight_entries_held_or_running(redis: Redis) -> None:
    release = asyncio.Event()

    async def wait(_: Delivery) -> None:
        await release.wait()

    recorder = Recorder(wait)
    await add(redis, 40)
    async with running(redis, recorder, max_in_flight=5) as consumer:
        await until(lambda: len(recorder.calls) == 5)
        await asyncio.sleep(0.3)  # several read cycles: none may take more entries
        assert recorder.running == 5 and consumer.in_flight == 5
        assert await pending(redis) == 5  # not even read beyond the bound
        release.set()
        await until(lambda: len(recorder.finished) == 40)
    assert recorder.max_running == 5
    assert await pending(redis) == 0


async def test_bound_holds_across_several_streams(redis: Redis) -> None:
    release = asyncio.Event()

    async def wait(_: Delivery) -> None:
        await release.wait()

    recorder = Recorder(wait)
    for stream in ("s1", "s2", "s3"):
        await add(redis, 10, stream)
    async with running(redis, recorder, streams=("s1", "s2", "s3"), max_in_flight=2):
        await until(lambda: len(recorder.calls) == 2)
        await asyncio.sleep(0.3)
        assert len(recorder.calls) == 2
        release.set()
        await until(lambda: len(recorder.finished) == 30)
    assert recorder.max_running == 2
    assert {d.stream for d in recorder.finished} == {"s1", "s2", "s3"}


async def test_dead_letter_error_dead_letters_at_once_with_reason_and_fields(
    redis: Redis,
) -> None:
    async def refuse(delivery: Delivery) -> None:
        raise DeadLetterError("payload.value is not a number", rule="close-valve", step="call")

    [entry_id] = await add(redis, 1, payload='{"value": "x"}')
    letters = DeadLetterStream(redis, STREAM)
    recorder = Recorder(refuse)
    async with running(redis, recorder):
        await until(lambda: _count_is(letters, 1))
    [letter] = await letters.read()
    assert (letter.stream, letter.entry_id) == (STREAM, entry_id)
    assert letter.reason == "payload.value is not a number"
    assert (letter.rule, letter.step, letter.attempts) == ("close-valve", "call", 1)
    assert letter.error_type == "DeadLetterError"
    assert letter.fields == {"n": "0", "payload": '{"value": "x"}'}
    assert (letter.group, letter.consumer) == (GROUP, "c1")
    assert len(recorder.calls) == 1
    assert await pending(redis) == 0


async def test_on_settled_is_told_each_entry_once_it_is_acked_or_dead_lettered(
    redis: Redis,
) -> None:
    async def refuse_odd(delivery: Delivery) -> None:
        if int(delivery.fields["n"]) % 2:
            raise DeadLetterError("odd")

    settled: list[tuple[str, str, int]] = []

    async def pending_now(delivery: Delivery) -> None:
        # Told after the XACK or the dead letter, never before.
        pending_ids = {str(p["message_id"]) for p in
                       await redis.xpending_range(STREAM, GROUP, "-", "+", 10)}
        settled.append((delivery.entry_id, outcome_of[delivery.entry_id],
                        int(delivery.entry_id in pending_ids)))

    outcome_of: dict[str, str] = {}
    checks: list[asyncio.Task[None]] = []

    def on_settled(delivery: Delivery, outcome: str) -> None:
        outcome_of[delivery.entry_id] = outcome
        checks.append(asyncio.create_task(pending_now(delivery)))

    ids = await add(redis, 4)
    consumer = Consumer(redis, Recorder(refuse_odd), ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="c1", start_id="0", block_ms=50),
        clock=SystemClock(), logger=get_logger(test="consumer"), on_settled=on_settled)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(checks) == 4)
        await asyncio.gather(*checks)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
    assert sorted(settled) == sorted([(ids[0], "acked", 0), (ids[1], "dead_lettered", 0),
                                      (ids[2], "acked", 0), (ids[3], "dead_lettered", 0)])


async def _count_is(letters: DeadLetterStream, expected: int) -> bool:
    return await letters.count() == expected


async def test_poison_entry_is_dead_lettered_after_max_deliveries_then_replayed(
    redis: Redis,
) -> None:
    healthy = False

    async def poison(delivery: Delivery) -> None:
        if not healthy:
            raise RuntimeError(f"cannot handle {delivery.entry_id}")

    [entry_id] = await add(redis, 1, payload='{"value": 1}')
    letters = DeadLetterStream(redis, STREAM)
    recorder = Recorder(poison)
    async with running(redis, recorder, claim_idle_ms=100, max_deliveries=3):
        await until(lambda: _count_is(letters, 1))
        [letter] = await letters.read()
        assert [d.delivery_count for d in recorder.calls] == [1, 2, 3]
        assert letter.attempts == 3 and letter.entry_id == entry_id
        assert letter.error_type == "RuntimeError"
        assert f"RuntimeError: cannot handle {entry_id}" in letter.reason
        assert await pending(redis) == 0

        healthy = True
        new_id = await letters.replay(letter.id)
        assert new_id is not None and new_id != entry_id
        await until(lambda: len(recorder.finished) == 1)
    assert recorder.finished[0].entry_id == new_id
    assert recorder.finished[0].fields == {"n": "0", "payload": '{"value": 1}',
                                           "replay_of": entry_id}
    assert recorder.finished[0].origin_id == entry_id
    assert await letters.count() == 0
    assert await pending(redis) == 0


async def test_crashed_consumers_entries_are_reclaimed_and_finished(redis: Redis) -> None:
    ids = await add(redis, 4)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    # A consumer that read the entries and died without acknowledging them.
    await redis.xreadgroup(GROUP, "crashed", {STREAM: ">"}, count=4)
    recorder = Recorder()
    async with running(redis, recorder, claim_idle_ms=200):
        await until(lambda: len(recorder.finished) == 4)
        await until(lambda: _is_zero(redis))
    assert sorted(recorder.ids()) == sorted(ids)
    assert {d.delivery_count for d in recorder.finished} == {2}


@pytest.mark.slow
async def test_a_handler_running_longer_than_the_visibility_timeout_is_not_stolen(
    redis: Redis,
) -> None:
    async def slow(_: Delivery) -> None:
        await asyncio.sleep(2.5)  # five visibility timeouts

    first, second = Recorder(slow), Recorder()
    [entry_id] = await add(redis, 1)
    async with running(redis, first, claim_idle_ms=500, consumer="first"):
        await until(lambda: len(first.calls) == 1)
        async with running(redis, second, claim_idle_ms=500, consumer="second"):
            await until(lambda: len(first.finished) == 1)
            await asyncio.sleep(0.6)  # one more visibility timeout: nothing left to take
    assert first.ids() == [entry_id] and first.calls[0].delivery_count == 1
    assert second.calls == []
    assert await pending(redis) == 0


async def test_max_deliveries_counts_deliveries_of_crashed_consumers(redis: Redis) -> None:
    [entry_id] = await add(redis, 1)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    # Delivered twice, to consumers that died before finishing.
    await redis.xreadgroup(GROUP, "crash-1", {STREAM: ">"})
    await redis.xautoclaim(STREAM, GROUP, "crash-2", min_idle_time=0)
    recorder = Recorder()
    letters = DeadLetterStream(redis, STREAM)
    async with running(redis, recorder, claim_idle_ms=100, max_deliveries=2):
        await until(lambda: _count_is(letters, 1))
    [letter] = await letters.read()
    assert recorder.calls == []
    assert letter.entry_id == entry_id and letter.attempts == 2
    assert "stopped before finishing" in letter.reason


async def test_same_key_runs_in_stream_order_and_keys_run_in_parallel(redis: Redis) -> None:
    timeline: list[tuple[str, str, str]] = []

    async def work(delivery: Delivery) -> None:
        device = orjson.loads(delivery.fields["payload"])["device"]
        timeline.append(("start", device, delivery.entry_id))
        await asyncio.sleep(0.02)
        timeline.append(("end", device, delivery.entry_id))

    order: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    for i in range(30):
        device = "abc"[i % 3]
        entry_id = await redis.xadd(STREAM, {"payload": orjson.dumps({"device": device})})
        order[device].append(str(entry_id))
    recorder = Recorder(work)
    async with running(redis, recorder, order_by="device", max_in_flight=10):
        await until(lambda: len(recorder.finished) == 30)
    for device, expected in order.items():
        starts = [e for kind, d, e in timeline if d == device and kind == "start"]
        assert starts == expected
        events = [(kind, e) for kind, d, e in timeline if d == device]
        # one at a time: every start is followed by its own end
        assert events == [(k, e) for e in expected for k in ("start", "end")]
    assert recorder.max_running == 3  # the three keys overlapped


async def test_ordered_failure_is_retried_in_place_before_the_next_entry_of_its_key(
    redis: Redis,
) -> None:
    failures = {"first": 1}

    async def flaky(delivery: Delivery) -> None:
        name = delivery.fields["name"]
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            raise ConnectionError("target down")

    await redis.xadd(STREAM, {"name": "first", "device": "d1"})
    await redis.xadd(STREAM, {"name": "second", "device": "d1"})
    recorder = Recorder(flaky)
    async with running(redis, recorder, order_by="device", retry_delay_ms=10):
        await until(lambda: len(recorder.finished) == 2)
    assert [(d.fields["name"], d.delivery_count) for d in recorder.calls] == [
        ("first", 1), ("first", 2), ("second", 1)]
    assert await pending(redis) == 0


async def test_stop_drains_in_flight_work_and_reads_nothing_more(redis: Redis) -> None:
    started = asyncio.Event()

    async def slow(_: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.3)

    recorder = Recorder(slow)
    [entry_id] = await add(redis, 1)
    consumer = Consumer(redis, recorder, ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="c1", start_id="0", block_ms=50),
        clock=SystemClock(), logger=get_logger())
    task = asyncio.create_task(consumer.run())
    await started.wait()
    consumer.stop()
    # After the read in progress (block_ms) returned; the drain is still going on.
    await asyncio.sleep(0.15)
    assert not task.done()
    late = await add(redis, 2)
    await asyncio.wait_for(task, timeout=5)
    assert recorder.ids() == [entry_id]
    assert await pending(redis) == 0
    assert len(await redis.xrange(STREAM, min=late[0])) == 2  # left for the others
    [info] = await redis.xinfo_groups(STREAM)
    assert info["lag"] == 2  # never delivered
    assert await redis.exists(f"fleet:consumers:{GROUP}:c1") == 0


async def test_drain_timeout_releases_unfinished_entries_for_others_at_once(
    redis: Redis,
) -> None:
    async def forever(_: Delivery) -> None:
        await asyncio.Event().wait()

    stuck = Recorder(forever)
    [entry_id] = await add(redis, 1)
    consumer = Consumer(redis, stuck, ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="stuck", start_id="0", block_ms=50,
        claim_idle_ms=60_000, drain_timeout_s=0.2), clock=SystemClock(), logger=get_logger())
    task = asyncio.create_task(consumer.run())
    await until(lambda: len(stuck.calls) == 1)
    consumer.stop()
    await asyncio.wait_for(task, timeout=5)
    assert await pending(redis) == 1  # not acknowledged: it did not finish

    other = Recorder()
    # Released: idle past the (one minute) visibility timeout already.
    async with running(redis, other, consumer="other", claim_idle_ms=60_000):
        await until(lambda: len(other.finished) == 1)
    assert other.ids() == [entry_id] and other.finished[0].delivery_count == 2


async def test_heartbeat_key_shows_a_live_consumer(redis: Redis) -> None:
    async with running(redis, Recorder(), consumer="live", claim_idle_ms=1000):
        await until(lambda: redis.exists(f"fleet:consumers:{GROUP}:live"))
        beat = orjson.loads(await redis.get(f"fleet:consumers:{GROUP}:live"))
        ttl_ms = await redis.pttl(f"fleet:consumers:{GROUP}:live")
    assert beat["streams"] == [STREAM] and beat["group"] == GROUP
    assert 0 < ttl_ms <= 1000


async def test_group_creation_tolerates_an_existing_group_and_a_missing_stream(
    redis: Redis,
) -> None:
    await redis.xgroup_create("existing", GROUP, id="0", mkstream=True)
    recorder = Recorder()
    async with running(redis, recorder, streams=("existing", "brand-new")):
        await redis.xadd("brand-new", {"n": "1"})
        await until(lambda: len(recorder.finished) == 1)
    assert await redis.exists("brand-new") == 1


def test_order_key_reads_fields_then_the_json_payload() -> None:
    assert order_key({"device": "d1"}, "device") == "d1"
    assert order_key({"payload": '{"meta": {"node": 7}}'}, "meta.node") == "7"
    assert order_key({"payload": '{"meta": {}}'}, "meta.node") is None
    assert order_key({"payload": "not json"}, "device") is None
    assert order_key({}, "device") is None


def test_invalid_options_name_every_problem() -> None:
    with pytest.raises(ConfigError) as error:
        ConsumerOptions(streams=(), max_in_flight=0, max_deliveries=0)
    message = str(error.value)
    assert "at least one stream" in message
    assert "max_in_flight must be >= 1, got 0" in message
    assert "max_deliveries must be >= 1, got 0" in message


async def test_a_reclaimed_entry_runs_before_newer_waiting_entries_of_its_key(
    redis: Redis,
) -> None:
    async def slow_second(delivery: Delivery) -> None:
        if delivery.fields["name"] == "second":
            await asyncio.sleep(1.2)  # long enough for the first to be reclaimed meanwhile

    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await redis.xadd(STREAM, {"name": "first", "device": "d1"})
    await redis.xreadgroup(GROUP, "crashed", {STREAM: ">"})  # held by a dead consumer
    for name in ("second", "third"):
        await redis.xadd(STREAM, {"name": name, "device": "d1"})
    recorder = Recorder(slow_second)
    async with running(redis, recorder, order_by="device", claim_idle_ms=200):
        await until(lambda: len(recorder.finished) == 3)
    # "second" was already running when "first" came back; "third" still waited.
    assert [d.fields["name"] for d in recorder.calls] == ["second", "first", "third"]


async def test_a_deleted_stream_and_group_are_created_again(redis: Redis) -> None:
    recorder = Recorder()
    await add(redis, 1)
    async with running(redis, recorder):
        await until(lambda: len(recorder.finished) == 1)
        await redis.delete(STREAM)  # an operator's DEL: the group goes with it
        await until(lambda: _group_exists(redis))
        [entry_id] = await add(redis, 1)
        await until(lambda: len(recorder.finished) == 2)
    assert recorder.finished[1].entry_id == entry_id


async def _group_exists(redis: Redis) -> bool:
    if not await redis.exists(STREAM):
        return False
    return any(g["name"] == GROUP for g in await redis.xinfo_groups(STREAM))
