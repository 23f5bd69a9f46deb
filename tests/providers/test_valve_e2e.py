"""End to end: a pressure reading on a real stream, a consumer group, the rules, the
safe pipeline and valve V-01 on a pymodbus TCP server; the audit chain records it all.

The rule closes V-01 when the pressure exceeds 8.5 bar; the definition's
postcondition reads the coil back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.dead_letters import DeadLetterStream
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.modbus import valve_control_spec
from providers.modbus.simulator import ValveSimulator
from tests.conftest import FIXTURES
from tests.execution_deps import execution_deps

CATALOG_LOG = get_logger(test="catalog")

STREAM = "pressure-readings"
COIL = 3
RULES = {"version": 1, "rules": [{
    "name": "close-on-pressure",
    "match": {"streams": [STREAM], "payload.value": {"gt": 8.5}},
    "steps": [{"id": "close", "call": "valve_control", "version": "^1.1",
               "params": {"valveId": "V-01", "action": "CLOSE"}}],
}]}


async def publish_pressure(redis: Redis, bar: float) -> str:
    reading = {"source": "sensor:pressure_line_1", "value": bar, "unit": "bar",
               "timestamp": "2026-12-01T10:00:00Z", "nodeId": "plc-1"}
    return str(await redis.xadd(STREAM, {"schema": "event-payload/1",
                                         "event": orjson.dumps(reading).decode()}))


async def until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def kinds(redis: Redis) -> list[str]:
    return [record.kind async for record in AuditChain(redis).records()]


@asynccontextmanager
async def consuming(redis: Redis, catalog: Catalog,
                    device: ValveSimulator) -> AsyncIterator[Consumer]:
    registry = CapabilityRegistry()
    registry.register(valve_control_spec({"V-01": device.address(COIL)}))
    # No resources= here: valve_control declares the valve it drives itself.
    deps = execution_deps(redis, SystemClock())
    executor = build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger)))
    handler = RulesHandler(parse_rules(RULES, source="rules.json"), executor, redis=redis)
    consumer = Consumer(redis, handler, ConsumerOptions(
        streams=(STREAM,), consumer="executor-1", start_id="0", block_ms=50,
        max_deliveries=2), clock=SystemClock(), logger=get_logger(test="valve-e2e"))
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)


async def test_high_pressure_closes_the_valve_through_a_consumer_group(redis: Redis) -> None:
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(), logger=CATALOG_LOG)
    path = FIXTURES / "valve" / "valve_control_v1.1.0.json"
    await catalog.register(parse_definition(path.read_bytes(), source=str(path))
                           .signed_with(key))
    dead_letters = DeadLetterStream(redis, STREAM)

    async with (ValveSimulator(initial={COIL: True}) as device,
                consuming(redis, catalog, device)):
        await publish_pressure(redis, 7.9)   # below the threshold: no rule matches
        await publish_pressure(redis, 9.2)   # closes V-01
        await until(lambda: _contains(redis, "executed"))
        assert await device.coil(COIL) is False
        assert device.writes == [(COIL, False)]

        await publish_pressure(redis, 9.4)   # already closed: precondition, acknowledged
        await until(lambda: _contains(redis, "precondition_failed"))

        await catalog.revoke("valve_control", "<2", "CVE-2024-0002 in the coil driver")
        await publish_pressure(redis, 9.9)   # revoked: refused, dead-lettered
        await until(dead_letters.count)

    assert await kinds(redis) == ["executed", "precondition_failed", "refused"]
    executed = [r async for r in AuditChain(redis).records(kind="executed")][0]
    assert executed.body["stateAfter"]["position"] == "CLOSED"
    assert executed.body["rule"] == "close-on-pressure"
    [letter] = await dead_letters.read()
    assert "CVE-2024-0002" in letter.reason
    assert device.writes == [(COIL, False)]
    assert (await redis.xpending(STREAM, "connector-fleet"))["pending"] == 0
    assert (await AuditChain(redis).verify()).ok


async def _contains(redis: Redis, kind: str) -> bool:
    return kind in await kinds(redis)
