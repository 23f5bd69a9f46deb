"""Every Lua script and every MULTI of the consuming and trust sides runs on a real
3-master Redis Cluster with keys of one slot: a consumer's and the trust side's whole
life is run on the cluster while MONITOR on every master records each EVAL/EVALSHA
(with its KEYS) and each MULTI...EXEC (with the keys of its commands). The test fails
if a script file of framework/consuming/lua or framework/trust/lua was not exercised,
so a new script must be added to the life below."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.crc import key_slot

from framework.consuming import RegistryExecutor, StreamRetention, prune_idle_consumer
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.dead_letters import DeadLetterStream
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core import KeyScheme, audit_chain_of, lua
from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from framework.testing import RedisCluster
from framework.trust import AuditChain, Catalog, FencingGuard, PrivateKey, ResourceArbiter
from framework.trust.audit.archive import AuditArchive
from framework.trust.catalog.signing import TrustStore
from tests.chaos.test_cluster_consume import eventually, item
from tests.execution_deps import execution_deps
from tests.trust.test_catalog import valve

ROOT = Path(__file__).parents[2] / "framework"
SIDES = {"framework.consuming": ROOT / "consuming" / "lua",
         "framework.trust": ROOT / "trust" / "lua"}
SHARDS = KeyScheme(tagged=True).shard_streams("life", 2)
# Commands that name no key (or whose argument is a channel): not checked in a MULTI.
_KEYLESS = {"MULTI", "EXEC", "DISCARD", "PUBLISH", "PING", "ECHO", "TIME"}
MARKER = "cluster-scripts-monitor-done"


def script_names() -> dict[str, str]:
    """sha1 -> "side/name" of every Lua script of the consuming and trust sides."""
    return {hashlib.sha1(lua(package, path.stem).encode()).hexdigest(): path.stem
            for package, folder in SIDES.items() for path in folder.glob("*.lua")}


class Seen:
    """What MONITOR saw on every master: script calls and transactions, with keys."""

    def __init__(self) -> None:
        self.scripts: list[tuple[str, list[str]]] = []
        self.transactions: list[list[str]] = []
        self._open: dict[tuple[str, str], list[str]] = {}

    def command(self, client: tuple[str, str], parts: list[str]) -> None:
        name = parts[0].upper()
        if name in ("EVALSHA", "EVAL"):
            sha = parts[1] if name == "EVALSHA" else hashlib.sha1(parts[1].encode()).hexdigest()
            self.scripts.append((script_names().get(sha, sha), parts[3:3 + int(parts[2])]))
        elif name == "MULTI":
            self._open[client] = []
        elif name == "EXEC" and client in self._open:
            self.transactions.append(self._open.pop(client))
        elif client in self._open and name not in _KEYLESS and len(parts) > 1:
            self._open[client].append(parts[1])


async def monitored(ports: list[int], run: Callable[[], Awaitable[None]]) -> Seen:
    seen = Seen()
    clients = [Redis(port=port, decode_responses=True) for port in ports]
    try:
        monitors = [client.monitor() for client in clients]
        for monitor in monitors:
            await monitor.__aenter__()

        async def collect(monitor: Any) -> None:
            async for info in monitor.listen():
                parts = str(info["command"]).split(" ")
                if parts[:2] == ["ECHO", MARKER]:
                    return
                seen.command((str(info["client_address"]), str(info["client_port"])), parts)

        readers = [asyncio.create_task(collect(m)) for m in monitors]
        await run()
        for client in clients:
            await client.echo(MARKER)
        await asyncio.wait_for(asyncio.gather(*readers), timeout=15)
        for monitor in monitors:
            await monitor.__aexit__(None, None, None)
    finally:
        for client in clients:
            await client.aclose()
    return seen


def rules() -> dict[str, Any]:
    emit = {"stream": "{alerts}", "event": {"type": "seen", "payload": {"n": 1}}}
    return {"version": 1, "rules": [{"name": "two", "match": {"streams": SHARDS},
                                     "steps": [{"id": "a", "emit": emit},
                                               {"id": "b", "emit": emit}]}]}


async def consuming_life(cluster: Any) -> None:
    """Run, dead-letter and replay, heartbeat, trim and prune, on the shards."""
    for shard in SHARDS:
        await cluster.xadd(shard, item("src", f"x-{shard}"))
        await cluster.xadd(shard, {"not": "an event"})
    executor = RegistryExecutor(CapabilityRegistry(), execution_deps(cluster, SystemClock()))
    handler = RulesHandler(parse_rules(rules()), executor, redis=cluster)
    options = ConsumerOptions(streams=tuple(SHARDS), group="g", consumer="c1", start_id="0",
                              block_ms=50, claim_idle_ms=300)
    consumer = Consumer(cluster, handler, options, clock=SystemClock(),
                        logger=get_logger(test="cluster-scripts"))
    task = asyncio.create_task(consumer.run())

    async def settled() -> bool:
        return all([int(await cluster.xlen(f"{s}:dlq")) == 1 for s in SHARDS]) and int(
            await cluster.xlen("{alerts}")) == 2 * len(SHARDS)

    await eventually(settled)
    consumer.stop()
    await asyncio.wait_for(task, 15)

    letters = DeadLetterStream(cluster, SHARDS[0])
    [letter] = await letters.read()
    assert await letters.replay(letter.id)
    assert await letters.purge() == 0

    member = GroupMember(cluster, group="g", consumer="c2",
                         dead_letter_streams={s: f"{s}:dlq" for s in SHARDS})
    [(stream, entry_id, _)] = await member.read([SHARDS[0]], count=1, block_ms=10)
    assert await member.touch(stream, [entry_id], idle_ms=0) == []
    await StreamRetention(cluster, max_len=0, logger=get_logger()).trim(SHARDS[1])
    assert await prune_idle_consumer(cluster, SHARDS[1], "g", "c1", idle_ms=0)


async def trust_life(cluster: Any) -> None:
    """Register, resolve, revoke; audit, trim; permits; fencing."""
    key = PrivateKey.generate()
    catalog = Catalog(cluster, TrustStore([key.public()]), clock=SystemClock(),
                      logger=get_logger())
    await catalog.register(valve("1.0.0").signed_with(key))
    await catalog.register(valve("1.1.0").signed_with(key))
    await catalog.revoke("valve_control", "1.1.0", "bad release")
    assert (await catalog.resolve("valve_control")).definition.version == "1.0.0"

    chain = AuditChain(cluster)
    for n in range(3):
        await chain.append("executed", {"n": n})
    archive = AuditArchive(cluster, chain=chain)
    plan = await archive.plan_trim(keep=1)
    assert plan is not None and (await archive.trim(plan)).removed == 2

    arbiter = ResourceArbiter(cluster, clock=SystemClock(), logger=get_logger())
    held = await arbiter.acquire("valve:V-1", wait_timeout_s=2)
    assert await arbiter.renew(held) and await arbiter.release(held)
    await FencingGuard(cluster).accept("valve:V-1", held.fencing_token)


async def test_every_script_and_transaction_touches_one_slot_on_the_cluster(
    cluster_servers: RedisCluster, cluster: Any,
) -> None:
    async def life() -> None:
        await consuming_life(cluster)
        await trust_life(cluster)

    seen = await monitored([node.port for node in cluster_servers.nodes], life)

    assert {name for name, _ in seen.scripts} == set(script_names().values())
    for name, keys in seen.scripts:
        assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
    assert seen.transactions  # the catalog's reads and the dead letters' purge
    for keys in seen.transactions:
        assert len({key_slot(k.encode()) for k in keys}) <= 1, keys


async def test_a_catalog_change_is_published_after_its_write(cluster: Any) -> None:
    key = PrivateKey.generate()
    catalog = Catalog(cluster, TrustStore([key.public()]), clock=SystemClock(),
                      logger=get_logger())
    pubsub = cluster.pubsub()
    await pubsub.subscribe("catalog:changes")
    try:
        await catalog.register(valve("1.0.0").signed_with(key))
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        # Whoever hears the announcement reads the definition it announces.
        assert orjson.loads(message["data"])["id"] == "valve_control"
        assert await cluster.hkeys("catalog:capability:{valve_control}") == ["1.0.0"]
    finally:
        await pubsub.aclose()


async def test_audit_records_spread_over_chains_verify_each_on_the_cluster(
    cluster: Any,
) -> None:
    # FLEET_AUDIT_CHAINS=3: a consumer process appends to the chain its name picks.
    names = [f"worker-{n}" for n in range(12)]
    chains = {name: AuditChain(cluster, chain=audit_chain_of(name, 3)) for name in names}
    for name, chain in chains.items():
        await chain.append("executed", {"by": name})

    streams = {chain.stream for chain in chains.values()}
    assert streams <= {"{audit:chain:0}", "{audit:chain:1}", "{audit:chain:2}"}
    assert len(streams) >= 2  # more than one chain in use
    for stream in streams:
        index = int(stream.strip("{}").rsplit(":", 1)[1])
        report = await AuditChain(cluster, chain=index).verify()
        assert report.broken is None
        assert report.records == sum(c.stream == stream for c in chains.values())
    assert audit_chain_of("worker-0", 1) is None  # one chain: the documented names
