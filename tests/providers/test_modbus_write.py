"""``modbus_write`` against a real pymodbus slave: every type written and read back,
every parameter error, and through the signed catalog's pipeline: a call that
succeeds, a slave that fails (retries, then the breaker opens), a postcondition
that fails (the rollback writes the previous value back and is audited), and a
redelivered event that does not write twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from pymodbus.constants import ExcCodes
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import (
    CallContext,
    CallPolicy,
    CallRequest,
    CapabilityExecutor,
)
from framework.consuming.delivery import Delivery
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core import HostPolicy, RefusedTargetError
from framework.core.clock import SystemClock
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.core.logs import get_logger
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.modbus import encode, modbus_write_spec
from providers.modbus.register_simulator import RegisterSimulator
from tests.conftest import FIXTURES
from tests.execution_deps import execution_deps

DEFINITION = FIXTURES / "catalog" / "modbus_write_v1.0.0.json"


@pytest.fixture
async def slave() -> AsyncIterator[RegisterSimulator]:
    async with RegisterSimulator() as device:
        yield device


def context(redis: Redis, hosts: HostPolicy | None = None) -> CallContext:
    return CallContext(idempotency_key="test:1-0:rule:step", event={}, redis=redis,
                       clock=SystemClock(), logger=get_logger(test="modbus-write"),
                       hosts=hosts)


def params(device: RegisterSimulator, **extra: Any) -> dict[str, Any]:
    return {"host": device.host, "port": device.port, "unitId": device.unit_id, **extra}


@pytest.mark.parametrize(("write", "table", "words"), [
    ({"type": "int16", "value": -21.5, "scale": 0.1}, "holding", encode(-215, "int16")),
    ({"type": "uint16", "value": [1, 2, 3]}, "holding", [1, 2, 3]),
    ({"type": "int32", "value": -7, "byteOrder": "little"}, "holding",
     encode(-7, "int32", byte_order="little")),
    ({"type": "uint32", "value": 4_000_000_000, "wordOrder": "little"}, "holding",
     encode(4_000_000_000, "uint32", word_order="little")),
    ({"type": "float32", "value": 21.1, "wordOrder": "little", "byteOrder": "little"},
     "holding", encode(21.1, "float32", word_order="little", byte_order="little")),
    ({"type": "float64", "value": 1e-3}, "holding", encode(1e-3, "float64")),
    ({"type": "coil", "value": True}, "coil", [1]),
    ({"type": "bool", "value": [True, False, True]}, "coil", [1, 0, 1]),
])
async def test_each_type_is_written_and_read_back(
    redis: Redis, slave: RegisterSimulator, write: dict[str, Any], table: str,
    words: list[int],
) -> None:
    spec = modbus_write_spec()
    assert spec.read_state is not None
    call = params(slave, address=20, **write)

    result = await spec.handler(call, context(redis))
    state = await spec.read_state(call, context(redis))

    assert slave.values[table][20:20 + len(words)] == words
    assert result == {"target": f"modbus:127.0.0.1:{slave.port}/1/20", "value": write["value"]}
    assert state["reachable"] is True and state["matches"] is True
    if write["type"] != "float32":  # 21.1 as a float32 is 21.100000381...
        assert state["value"] == pytest.approx(write["value"])


async def test_read_back_tells_a_different_value_and_an_unreachable_slave(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    spec = modbus_write_spec()
    assert spec.read_state is not None
    slave.set_words("holding", 5, [99])
    state = await spec.read_state(params(slave, address=5, type="uint16", value=100),
                                  context(redis))
    assert state == {"reachable": True, "value": 99, "raw": [99], "matches": False}
    await slave.stop()
    state = await spec.read_state(params(slave, address=5, type="uint16", value=100),
                                  context(redis))
    assert (state["reachable"], state["matches"]) == (False, False)


@pytest.mark.parametrize(("change", "message"), [
    ({"host": ""}, "host: String should have at least 1 character"),
    ({"address": -1}, "address: Input should be greater than or equal to 0"),
    ({"address": None}, "address: Input should be a valid integer"),
    ({"type": "int8"}, "type: Input should be"),
    ({"value": "high"}, "value"),
    ({"value": 70000}, "70000 does not fit int16"),
    ({"value": 1.5}, "1.5 is not a whole int16"),
    ({"value": True}, "value of a int16 must be a number"),
    ({"type": "coil", "value": 1}, "value of a coil must be true or false"),
    ({"type": "coil", "value": True, "scale": 2}, "scale applies to numbers"),
    ({"value": list(range(124))}, "124 x int16 spans 124; one write takes 1 to 123"),
    ({"address": 65535, "type": "int32"}, "runs past 65535"),
    ({"wordOrder": "middle"}, "wordOrder: Input should be 'big' or 'little'"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
])
async def test_parameter_errors_name_the_parameter(
    redis: Redis, slave: RegisterSimulator, change: dict[str, Any], message: str,
) -> None:
    call = {**params(slave, address=1, type="int16", value=1), **change}
    with pytest.raises(ValueError, match="modbus_write: ") as raised:
        await modbus_write_spec().handler(call, context(redis))
    assert message in str(raised.value)
    assert slave.writes == []


async def test_an_exception_code_is_a_permanent_error_naming_it(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    with pytest.raises(Exception, match=r"write of uint16 at address 5000 on "
                       r"modbus:127\.0\.0\.1:\d+/1/5000 refused: Modbus exception 2 "
                       r"\(ILLEGAL DATA ADDRESS\)") as raised:
        await modbus_write_spec().handler(params(slave, address=5000, type="uint16",
                                                 value=1), context(redis))
    assert getattr(raised.value, "retryable", True) is False


async def test_a_host_the_steps_allow_list_does_not_name_is_refused(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    with pytest.raises(RefusedTargetError, match="not in the allow-list"):
        await modbus_write_spec().handler(params(slave, address=1, type="int16", value=1),
                                          context(redis, HostPolicy.of(["10.0.0.20"])))
    assert slave.writes == []
    await modbus_write_spec().handler(params(slave, address=1, type="int16", value=1),
                                      context(redis, HostPolicy.of(["127.0.0.1"])))
    assert slave.writes == [("holding", 1, [1])]


# -- through the signed catalog -------------------------------------------------------


async def safe_executor(redis: Redis, spec_policy: CallPolicy | None = None,
                        **definition_changes: Any) -> CapabilityExecutor:
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(),
                      logger=get_logger(test="catalog"))
    raw = {**orjson.loads(DEFINITION.read_bytes()), **definition_changes}
    await catalog.register(parse_definition(raw, source=str(DEFINITION)).signed_with(key))
    registry = CapabilityRegistry()
    registry.register(modbus_write_spec(policy=spec_policy))
    deps = execution_deps(redis, SystemClock())
    return build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger)))


def setpoint(device: RegisterSimulator | int, value: float, key: str = "ev:1-0:r:s",
             ) -> CallRequest:
    port = device if isinstance(device, int) else device.port
    return CallRequest(capability_id="modbus_write", version_range="^1",
                       params={"host": "127.0.0.1", "port": port, "address": 40,
                               "type": "float32", "value": value},
                       idempotency_key=key, event={}, rule="r", step="s")


async def test_a_write_runs_through_the_pipeline_and_is_audited(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    executor = await safe_executor(redis)

    result = await executor.execute(setpoint(slave, 21.5))

    assert result["value"] == 21.5
    assert slave.values["holding"][40:42] == encode(21.5, "float32")
    [record] = [r async for r in AuditChain(redis).records()]
    assert record.kind == "executed"
    assert (record.body["stateBefore"]["value"], record.body["stateAfter"]["value"]) == (0, 21.5)
    assert record.body["resource"] == "modbus:127.0.0.1/40"


async def test_a_write_that_does_not_stick_is_rolled_back_to_the_previous_value(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    slave.set_words("holding", 40, encode(18.0, "float32"))
    slave.stuck = True
    executor = await safe_executor(redis)

    with pytest.raises(RolledBackError) as caught:
        await executor.execute(setpoint(slave, 21.5))

    assert caught.value.rollback_ok is True
    assert [w[2] for w in slave.writes] == [encode(21.5, "float32"), encode(18.0, "float32")]
    failed, rollback = [r async for r in AuditChain(redis).records()]
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.kind == "rollback" and rollback.body["ok"] is True
    assert rollback.body["rollbackParams"]["value"] == 18.0


async def test_a_busy_slave_is_retried_then_its_breaker_opens(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    slave.refuse_writes[40] = ExcCodes.DEVICE_BUSY
    # No rollback: its writes (refused too) would count with the call's.
    executor = await safe_executor(redis, CallPolicy(max_retries=1, backoff_base_s=0.01),
                                   rollbackStrategy="none")

    with pytest.raises(CallFailedError, match=r"failed after 2 attempts: .*Modbus exception 6 "
                       r"\(SERVER DEVICE BUSY\)"):
        await executor.execute(setpoint(slave, 1.0))
    assert slave.refused_writes == 2  # the call and its retry
    for _ in range(10):
        try:
            await executor.execute(setpoint(slave, 1.0))
        except CircuitOpenError:
            break
        except CallFailedError:
            continue
    else:
        raise AssertionError("the breaker never opened")
    before = slave.refused_writes
    with pytest.raises(CircuitOpenError):
        await executor.execute(setpoint(slave, 1.0))
    assert slave.refused_writes == before  # an open breaker spares the slave
    assert slave.writes == []


async def test_a_redelivered_event_does_not_write_twice(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    rules = parse_rules({"version": 1, "rules": [{
        "name": "setpoint", "match": {"stream": "plant"},
        "steps": [{"id": "write", "call": "modbus_write", "params": {
            "host": "127.0.0.1", "port": slave.port, "address": 7, "type": "int16",
            "value": "{{ payload.value }}"}}]}]})
    registry = CapabilityRegistry()
    registry.register(modbus_write_spec())
    handler = RulesHandler(rules, RegistryExecutor(registry, execution_deps(redis, SystemClock())),
                           redis=redis)
    event = {"source": "hmi", "value": 42, "timestamp": "2026-12-03T10:00:00Z",
             "nodeId": "hmi-1"}
    entry_id = await redis.xadd("plant", {"event": orjson.dumps(event).decode()})
    [(read_id, fields)] = await redis.xrange("plant", entry_id, entry_id)
    delivery = Delivery("plant", read_id, fields, "rules", "consumer-1")
    member = GroupMember(redis, group="rules", consumer="consumer-1", dead_letter_streams={})

    await member.ack([(delivery, await handler.handle(delivery) or ())])
    again = replace(delivery, delivery_count=2)
    await member.ack([(again, await handler.handle(again) or ())])

    assert slave.values["holding"][7] == 42
    assert slave.writes == [("holding", 7, [42])]
