"""Stream consumers on a real 3-master Redis Cluster: each shard read apart (one
XREADGROUP per slot), dead letters, step records and emits kept in their slots, a
republished item run once, a quiet shard's blocked read delaying no other shard, and a
stream whose keys would span slots refused at start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core import ConfigError, KeyScheme
from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from framework.testing import RedisCluster
from tests.cli import FleetCli
from tests.execution_deps import execution_deps

SHARDS = KeyScheme(tagged=True).shard_streams("sig", 3)  # {sig:0}, {sig:1}, {sig:2}
ALERTS = "{alerts}"


def rules() -> dict[str, Any]:
    return {"version": 1, "rules": [{
        "name": "fwd", "match": {"streams": SHARDS},
        "steps": [{"id": "out", "emit": {"stream": ALERTS, "event": {
            "type": "seen", "payload": {"item": "{{ payload.id }}"}}}}],
    }]}


def item(connector: str, item_id: str, version: str = "v1") -> dict[str, str]:
    return {"connector": connector, "type": "T", "item_id": item_id, "version": version,
            "payload": orjson.dumps({"id": item_id}).decode()}


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Poll ``check`` (Redis state: nothing to wait on as an event)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


def handler_on(cluster: Any) -> RulesHandler:
    executor = RegistryExecutor(CapabilityRegistry(), execution_deps(cluster, SystemClock()))
    return RulesHandler(parse_rules(rules()), executor, redis=cluster)


def consumer_on(cluster: Any, **options: Any) -> Consumer:
    settings: dict[str, Any] = {"streams": tuple(SHARDS), "group": "g", "consumer": "c1",
                                "start_id": "0", "block_ms": 100, "claim_idle_ms": 500,
                                **options}
    return Consumer(cluster, handler_on(cluster), ConsumerOptions(**settings),
                    clock=SystemClock(), logger=get_logger(test="cluster-consume"))


@pytest.fixture
async def running(cluster: Any) -> AsyncIterator[Callable[..., Consumer]]:
    started: list[tuple[Consumer, asyncio.Task[None]]] = []

    def start(**options: Any) -> Consumer:
        consumer = consumer_on(cluster, **options)
        started.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    yield start
    for consumer, task in started:
        consumer.stop()
        await asyncio.wait_for(task, 15)


async def emitted_items(cluster: Any) -> list[str]:
    entries = await cluster.xrange(ALERTS)
    return sorted(orjson.loads(f["event"])["payload"]["item"] for _, f in entries)


async def pending(cluster: Any) -> int:
    return sum([int((await cluster.xpending(s, "g"))["pending"]) for s in SHARDS])


async def test_the_shards_sit_on_several_masters(cluster: Any) -> None:
    assert len({cluster.get_node_from_key(s).port for s in SHARDS}) >= 2


async def test_every_shard_is_consumed_and_each_item_emitted_once(
    cluster: Any, running: Callable[..., Consumer],
) -> None:
    expected = []
    for i in range(30):
        shard = SHARDS[i % 3]
        await cluster.xadd(shard, item("src", f"i{i}"))
        expected.append(f"i{i}")

    running()
    await eventually(lambda: _has(cluster, len(expected)))
    await eventually(lambda: _none_pending(cluster))

    assert await emitted_items(cluster) == sorted(expected)
    # The emit's record sits in the target's slot (the entry's own records in its shard's).
    records = [k async for k in cluster.scan_iter(match="fleet:emitted:*",
                                                   target_nodes=cluster.PRIMARIES)]
    assert len(records) == 30
    assert {await cluster.cluster_keyslot(k) for k in records} == {
        await cluster.cluster_keyslot(ALERTS)}


async def test_a_republished_item_runs_nothing_again(
    cluster: Any, running: Callable[..., Consumer],
) -> None:
    await cluster.xadd(SHARDS[1], item("src", "a"))
    running()
    await eventually(lambda: _has(cluster, 1))
    await eventually(lambda: _none_pending(cluster))

    # A connector republishing after a failover rollback: same (connector, item, version).
    await cluster.xadd(SHARDS[1], item("src", "a"))
    await cluster.xadd(SHARDS[2], item("src", "b"))
    await eventually(lambda: _has(cluster, 2))
    await eventually(lambda: _none_pending(cluster))

    assert await emitted_items(cluster) == ["a", "b"]


async def test_a_bad_entry_is_dead_lettered_in_its_shards_slot(
    cluster: Any, running: Callable[..., Consumer],
) -> None:
    await cluster.xadd(SHARDS[2], {"nothing": "useful"})
    await cluster.xadd(SHARDS[2], item("src", "ok"))

    running()
    await eventually(lambda: _has(cluster, 1))
    await eventually(lambda: _dead_letters(cluster, f"{SHARDS[2]}:dlq", 1))

    letters = await cluster.xrange(f"{SHARDS[2]}:dlq")
    assert letters[0][1]["stream"] == SHARDS[2]
    assert await emitted_items(cluster) == ["ok"]


async def test_a_quiet_shards_blocked_read_delays_no_other_shard(
    cluster: Any, running: Callable[..., Consumer],
) -> None:
    # Reads block 10 s: an entry waiting for a blocked read of another shard would wait
    # that long.
    running(block_ms=10_000, start_id="$")
    await eventually(lambda: _groups_exist(cluster))
    await asyncio.sleep(0.3)  # every shard's read is blocked now

    sent = time.monotonic()
    await cluster.xadd(SHARDS[1], item("src", "x"))
    await eventually(lambda: _has(cluster, 1), timeout_s=20)

    assert time.monotonic() - sent < 5.0


async def test_a_stream_whose_keys_span_slots_is_refused_at_start(cluster: Any) -> None:
    with pytest.raises(ConfigError, match="stream 'plain'.*different Cluster slots"):
        consumer_on(cluster, streams=("plain",))
    with pytest.raises(ConfigError, match="dead-letter stream"):
        consumer_on(cluster, streams=(SHARDS[0],), dead_letter_stream="all-dead-letters")


async def _has(cluster: Any, count: int) -> bool:
    return int(await cluster.xlen(ALERTS)) >= count


async def _none_pending(cluster: Any) -> bool:
    return await pending(cluster) == 0


async def _dead_letters(cluster: Any, stream: str, count: int) -> bool:
    return int(await cluster.xlen(stream)) >= count


async def _groups_exist(cluster: Any) -> bool:
    for stream in SHARDS:
        if not await cluster.exists(stream):
            return False
        if not [g for g in await cluster.xinfo_groups(stream) if g["name"] == "g"]:
            return False
    return True


async def test_a_burst_over_the_shards_stops_only_once_every_shard_is_empty(
    cluster: Any,
) -> None:
    for i in range(150):
        await cluster.xadd(SHARDS[i % 2], item("src", f"b{i}"))  # {sig:2} stays empty

    consumer = consumer_on(cluster, burst=True, max_in_flight=8)
    await asyncio.wait_for(consumer.run(), 60)

    assert len(await emitted_items(cluster)) == 150
    assert await pending(cluster) == 0


class _Concurrency:
    """A handler that holds each entry a moment and notes how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.done = 0

    async def handle(self, delivery: Any) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        self.done += 1


async def test_split_reads_never_hold_more_than_max_in_flight(cluster: Any) -> None:
    for i in range(120):
        await cluster.xadd(SHARDS[i % 3], item("src", f"m{i}"))
    handler = _Concurrency()
    consumer = Consumer(cluster, handler, ConsumerOptions(
        streams=tuple(SHARDS), group="g", consumer="c1", start_id="0", block_ms=100,
        max_in_flight=5, burst=True), clock=SystemClock(), logger=get_logger(test="bound"))

    await asyncio.wait_for(consumer.run(), 60)

    assert handler.done == 120
    assert 1 < handler.most <= 5


async def test_a_shard_whose_group_vanished_is_read_again_while_others_are_busy(
    cluster: Any, running: Callable[..., Consumer],
) -> None:
    running()
    await eventually(lambda: _groups_exist(cluster))
    done = asyncio.Event()
    feeding = asyncio.create_task(_feed(cluster, SHARDS[:2], done))
    await cluster.xgroup_destroy(SHARDS[2], "g")  # its read fails with NOGROUP
    await cluster.xadd(SHARDS[2], item("src", "late"))

    try:
        await eventually(lambda: _emitted(cluster, "late"), timeout_s=30)
    finally:
        done.set()
        await feeding


async def _feed(cluster: Any, streams: list[str], done: asyncio.Event) -> None:
    """Entries on ``streams`` until ``done``: their reads keep returning some."""
    n = 0
    while not done.is_set():
        await cluster.xadd(streams[n % len(streams)], item("src", f"busy{n}"))
        n += 1
        await asyncio.sleep(0.002)


async def _emitted(cluster: Any, item_id: str) -> bool:
    return item_id in await emitted_items(cluster)


async def test_the_consumer_commands_of_the_cli_work_on_the_cluster(
    cluster: Any, cluster_servers: RedisCluster, running: Callable[..., Consumer],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    await cluster.xadd(SHARDS[2], {"nothing": "useful"})
    await cluster.xadd(SHARDS[0], item("src", "ok"))
    consumer = running()
    await eventually(lambda: _dead_letters(cluster, f"{SHARDS[2]}:dlq", 1))
    await eventually(lambda: _has(cluster, 1))
    consumer.stop()
    cli = FleetCli(capsys, monkeypatch, {"REDIS_URL": cluster_servers.url})

    def run(*argv: str) -> Any:
        return asyncio.to_thread(cli, *argv)

    groups = await run("consumers", "--stream", SHARDS[2], "--json")
    letters = await run("dlq", "list", SHARDS[2], "--json")
    replayed = await run("dlq", "replay", SHARDS[2], "--all")
    trimmed = await run("streams", "trim", *SHARDS, "--json")

    assert groups.returncode == 0 and '"g"' in groups.stdout, groups
    assert letters.returncode == 0 and "no event contract fits" in letters.stdout, letters
    assert replayed.returncode == 0 and await cluster.xlen(f"{SHARDS[2]}:dlq") == 0, replayed
    assert trimmed.returncode == 0, trimmed
    assert [f for _, f in await cluster.xrange(SHARDS[2])][-1]["nothing"] == "useful"


async def test_entries_of_a_crashed_consumer_are_reclaimed_from_every_shard(
    cluster: Any, running: Callable[..., Consumer],
) -> None:
    crashed = GroupMember(cluster, group="g", consumer="crashed",
                          dead_letter_streams={s: f"{s}:dlq" for s in SHARDS})
    for shard in SHARDS:
        await crashed.create_group(shard, start_id="0", at_s=0.0)
        await cluster.xadd(shard, item("src", f"held-{shard}"))
        [(_, _, _)] = await crashed.read([shard], count=1, block_ms=10)  # never acked

    running(claim_idle_ms=200)

    await eventually(lambda: _has(cluster, 3))
    await eventually(lambda: _none_pending(cluster))
    assert await emitted_items(cluster) == sorted(f"held-{s}" for s in SHARDS)


async def test_quiet_shards_leave_their_share_of_max_in_flight_to_a_busy_one(
    cluster: Any,
) -> None:
    for i in range(60):
        await cluster.xadd(SHARDS[0], item("src", f"q{i}"))  # the other two stay empty
    handler = _Concurrency()
    consumer = Consumer(cluster, handler, ConsumerOptions(
        streams=tuple(SHARDS), group="g", consumer="c1", start_id="0", block_ms=200,
        max_in_flight=6, burst=True), clock=SystemClock(), logger=get_logger(test="share"))

    await asyncio.wait_for(consumer.run(), 60)

    assert handler.done == 60
    # A share is 6 // 3 = 2: more at once means the quiet shards' reads held back less.
    assert handler.most > 2
