"""``opcua_write`` through the signed catalog's pipeline on a real asyncua server: an
audited write, a write that does not stick (the postcondition fails, the rollback
writes the previous value back and is audited), a server that is gone (retried, then
the breaker opens and spares it), and a redelivered event that does not call the
method twice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from asyncua import Client
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallPolicy, CallRequest, CapabilityExecutor
from framework.consuming.delivery import Delivery
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.core.logs import get_logger
from framework.testing import free_port
from framework.testing.opcua import OpcUaServer, node_id
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.opcua import EndpointConfig, opcua_write_spec
from tests.conftest import REPO_ROOT
from tests.execution_deps import execution_deps

pytestmark = pytest.mark.slow  # a server process per module (~2 s)

DEFINITION = REPO_ROOT / "providers" / "opcua" / "definitions" / "opcua_write_v1.0.0.json"


async def safe_executor(redis: Redis, endpoint: str, spec_policy: CallPolicy | None = None,
                        **definition_changes: Any) -> CapabilityExecutor:
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(),
                      logger=get_logger(test="catalog"))
    raw = {**orjson.loads(DEFINITION.read_bytes()), **definition_changes}
    await catalog.register(parse_definition(raw, source=str(DEFINITION)).signed_with(key))
    registry = CapabilityRegistry()
    registry.register(opcua_write_spec({"plc": EndpointConfig(endpoint=endpoint)},
                                       policy=spec_policy))
    deps = execution_deps(redis, SystemClock())
    return build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger)))


def setpoint(name: str, value: float, key: str = "ev:1-0:r:s") -> CallRequest:
    return CallRequest(capability_id="opcua_write", version_range="^1",
                       params={"endpoint": "plc", "nodeId": node_id(name), "value": value,
                               "variantType": "Double"},
                       idempotency_key=key, event={}, rule="r", step="s")


async def read(server: OpcUaServer, name: str) -> Any:
    async with Client(server.endpoint, timeout=10) as client:
        return await client.get_node(node_id(name)).read_value()


async def test_a_write_runs_through_the_pipeline_and_is_audited(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    executor = await safe_executor(redis, opcua_server.endpoint)
    before = await read(opcua_server, "Pressure")

    result = await executor.execute(setpoint("Pressure", 3.5))

    assert result["value"] == 3.5
    assert await read(opcua_server, "Pressure") == 3.5
    [record] = [r async for r in AuditChain(redis).records()]
    assert record.kind == "executed"
    assert (record.body["stateBefore"]["value"], record.body["stateAfter"]["value"]) == (
        before, 3.5)
    assert record.body["resource"] == f"opcua:plc/{node_id('Pressure')}"


async def test_a_write_that_does_not_stick_is_rolled_back_to_the_previous_value(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    executor = await safe_executor(redis, opcua_server.endpoint)

    with pytest.raises(RolledBackError) as caught:
        await executor.execute(setpoint("Stuck", 21.5))  # the server undoes it at once

    assert caught.value.rollback_ok is True
    failed, rollback = [r async for r in AuditChain(redis).records()]
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.kind == "rollback" and rollback.body["ok"] is True
    assert rollback.body["rollbackParams"]["value"] == 0.0


async def test_a_server_that_is_gone_is_retried_then_its_breaker_opens(redis: Redis) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    # No precondition (it would refuse the unreachable server before any call) and
    # no rollback (its writes would count with the call's).
    executor = await safe_executor(redis, endpoint, CallPolicy(max_retries=1,
                                                               backoff_base_s=0.01),
                                   preconditions=[], rollbackStrategy="none")

    with pytest.raises(CallFailedError, match=r"failed after 2 attempts: .*opcua server "
                                              rf"{endpoint}: cannot connect"):
        await executor.execute(setpoint("Pressure", 1.0))
    for _ in range(10):
        try:
            await executor.execute(setpoint("Pressure", 1.0))
        except CircuitOpenError:
            break
        except CallFailedError:
            continue
    else:
        raise AssertionError("the breaker never opened")
    with pytest.raises(CircuitOpenError, match="opcua_write@plc"):
        await executor.execute(setpoint("Pressure", 1.0))


async def test_a_redelivered_event_does_not_call_the_method_twice(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    rules = parse_rules({"version": 1, "rules": [{
        "name": "pump", "match": {"stream": "plant"},
        "steps": [{"id": "start", "call": "opcua_write", "params": {
            "endpoint": "plc", "nodeId": node_id("Pump"), "method": node_id("Pump.Start"),
            "arguments": [{"value": "{{ payload.value }}", "variantType": "Double"}]}}]}]})
    registry = CapabilityRegistry()
    registry.register(opcua_write_spec({"plc": EndpointConfig(endpoint=opcua_server.endpoint)}))
    handler = RulesHandler(rules, RegistryExecutor(registry, execution_deps(redis, SystemClock())),
                           redis=redis)
    event = {"source": "hmi", "value": 900.0, "timestamp": "2026-12-03T10:00:00Z",
             "nodeId": "hmi-1"}
    entry_id = await redis.xadd("plant", {"event": orjson.dumps(event).decode()})
    [(read_id, fields)] = await redis.xrange("plant", entry_id, entry_id)
    delivery = Delivery("plant", read_id, fields, "rules", "consumer-1")
    member = GroupMember(redis, group="rules", consumer="consumer-1", dead_letter_streams={})
    starts = await read(opcua_server, "Pump.Starts")

    await member.ack([(delivery, await handler.handle(delivery) or ())])
    again = replace(delivery, delivery_count=2)
    await member.ack([(again, await handler.handle(again) or ())])

    assert await read(opcua_server, "Pump.Starts") == starts + 1
    assert await read(opcua_server, "Pump.Speed") == 900.0
