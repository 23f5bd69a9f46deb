"""The safe pipeline's seven steps on real peers: Redis (catalog, permits, audit chain)
and a pymodbus TCP server driving valve V-01 (coil 3, ON = open)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import (
    CallContext,
    CallPolicy,
    CallRequest,
    CapabilityExecutor,
    CapabilitySpec,
)
from framework.core.clock import SystemClock
from framework.core.connections import create_redis
from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    DeadLetterError,
    RolledBackError,
    StaleFencingTokenError,
)
from framework.core.keys import ALERTS_STREAM, catalog_definitions_key
from framework.core.logs import get_logger
from framework.testing import RedisServer, free_port
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain, AuditRecord
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import CapabilityDefinition, Catalog, parse_definition
from framework.trust.execution.metrics import ExecutionMetrics
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.modbus import VALVE_RESOURCE, ValveAddress, valve_control_spec
from providers.modbus.simulator import ValveSimulator
from tests.conftest import FIXTURES
from tests.execution_deps import execution_deps

CATALOG_LOG = get_logger(test="catalog")

VALVE_FILE = FIXTURES / "valve" / "valve_control_v1.1.0.json"
COIL = 3


def valve_definition(**changes: Any) -> CapabilityDefinition:
    raw = orjson.loads(VALVE_FILE.read_bytes())
    raw.update(changes)
    return parse_definition(raw, source=str(VALVE_FILE))


def plain_definition(capability_id: str, **changes: Any) -> CapabilityDefinition:
    return parse_definition({"id": capability_id, "version": "1.0.0", "sector": "IOT",
                             "handler": f"{capability_id}@1.0.0", **changes},
                            source="test")


def close_v01(key: str = "valve-events:1-0:close-on-pressure:close",
              action: str = "CLOSE") -> CallRequest:
    return CallRequest(capability_id="valve_control", version_range="^1.1",
                       params={"valveId": "V-01", "action": action},
                       idempotency_key=key, event={"payload": {"value": 9.2}},
                       rule="close-on-pressure", step="close")


@dataclass
class Plant:
    """Everything an executor needs, on one Redis and one Modbus device."""

    redis: Redis
    key: PrivateKey
    catalog: Catalog
    registry: CapabilityRegistry
    device: ValveSimulator
    prometheus: CollectorRegistry
    executor: CapabilityExecutor

    async def register(self, definition: CapabilityDefinition) -> None:
        await self.catalog.register(definition.signed_with(self.key))

    async def records(self) -> list[AuditRecord]:
        return [record async for record in AuditChain(self.redis).records()]

    def metric(self, name: str, **labels: str) -> float:
        return self.prometheus.get_sample_value(name, labels) or 0.0


def build_executor(redis: Redis, catalog: Catalog, registry: CapabilityRegistry,
                   prometheus: CollectorRegistry | None = None) -> CapabilityExecutor:
    metrics = (ExecutionMetrics.create(prometheus, catalog=catalog)
               if prometheus is not None else None)
    deps = execution_deps(redis, SystemClock(), prometheus)
    return build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=metrics,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger,
                                wait_histogram=metrics.permit_wait if metrics else None),
        resources={"valve_control": VALVE_RESOURCE}))


def arbiter_on(redis: Redis) -> ResourceArbiter:
    return ResourceArbiter(redis, clock=SystemClock(), logger=get_logger(test="permits"))


async def plant_on(redis: Redis, device: ValveSimulator) -> Plant:
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(), logger=CATALOG_LOG)
    registry = CapabilityRegistry()
    registry.register(valve_control_spec({"V-01": device.address(COIL)}))
    prometheus = CollectorRegistry()
    plant = Plant(redis, key, catalog, registry, device, prometheus,
                  build_executor(redis, catalog, registry, prometheus))
    await plant.register(valve_definition())
    return plant


@pytest.fixture
async def plant(redis: Redis) -> AsyncIterator[Plant]:
    async with ValveSimulator(initial={COIL: True}) as device:
        yield await plant_on(redis, device)


async def alerts(redis: Redis) -> list[dict[str, Any]]:
    return [orjson.loads(fields["event"]) for _, fields in await redis.xrange(ALERTS_STREAM)]


# -- the seven steps -----------------------------------------------------------------


async def test_a_step_runs_through_the_seven_steps_and_is_audited(plant: Plant) -> None:
    result = await plant.executor.execute(close_v01())

    assert result == {"valveId": "V-01", "action": "CLOSE", "fencingToken": 1}
    assert await plant.device.coil(COIL) is False
    [record] = await plant.records()
    assert record.kind == "executed"
    body = record.body
    assert (body["capability"], body["version"], body["keyId"]) == (
        "valve_control", "1.1.0", plant.key.key_id)
    assert (body["resource"], body["fencingToken"]) == ("valve:V-01", 1)
    assert (body["stateBefore"]["position"], body["stateAfter"]["position"]) == (
        "OPEN", "CLOSED")
    assert body["idempotencyKey"] == "valve-events:1-0:close-on-pressure:close"
    assert plant.metric("connector_call_duration_ms_count", capability_id="valve_control",
                        version="1.1.0", status="ok") == 1
    assert plant.metric("connector_permit_wait_seconds_count", resource_kind="valve",
                        outcome="granted") == 1
    assert await arbiter_on(plant.redis).holders("valve:V-01") == {}
    assert (await AuditChain(plant.redis).verify()).ok


async def test_a_false_precondition_is_recorded_and_not_executed(redis: Redis) -> None:
    async with ValveSimulator(initial={COIL: False}) as closed_valve:
        plant = await plant_on(redis, closed_valve)
        outcome = await plant.executor.execute(close_v01())

        assert outcome["executed"] is False
        assert outcome["condition"] == "state.closed != (params.action == 'CLOSE')"
        assert closed_valve.writes == []
        assert await closed_valve.coil(COIL) is False
    [record] = await plant.records()
    assert record.kind == "precondition_failed"
    assert record.body["condition"] == outcome["condition"]
    assert record.body["description"] == "Not already in the commanded position"
    assert record.body["state"]["position"] == "CLOSED"
    assert outcome["auditSeq"] == record.seq
    assert plant.metric("connector_precondition_failures_total",
                        capability_id="valve_control", condition=outcome["condition"]) == 1


async def test_a_precondition_over_the_parameters_refuses_an_unknown_command(
    plant: Plant
) -> None:
    outcome = await plant.executor.execute(close_v01(action="TOGGLE"))
    assert outcome["condition"] == "params.action in ('OPEN', 'CLOSE')"
    assert plant.device.writes == []


async def test_an_unreachable_valve_fails_its_precondition(redis: Redis) -> None:
    plant = await plant_on(redis, ValveSimulator())  # never started: nothing listens
    outcome = await plant.executor.execute(close_v01())
    assert outcome["condition"] == "state.reachable == true"


async def test_a_precondition_that_cannot_be_evaluated_is_recorded_and_dead_lettered(
    plant: Plant
) -> None:
    broken = valve_definition(version="1.2.0", handler="valve_control@1.1.0",
                              preconditions=[{"check": "state.no_such_field == 1"}])
    await plant.register(broken)
    with pytest.raises(DeadLetterError, match="no_such_field"):
        await plant.executor.execute(close_v01())
    assert [r.kind for r in await plant.records()] == ["precondition_failed"]
    assert plant.device.writes == []


async def test_a_state_that_cannot_be_read_is_recorded_and_dead_lettered(plant: Plant) -> None:
    request = CallRequest("valve_control", "^1.1", {"action": "CLOSE"}, "s:9-0:r:s", {},
                          "r", "s")
    with pytest.raises(DeadLetterError, match="cannot read the state.*valveId"):
        await plant.executor.execute(request)
    [record] = await plant.records()
    assert (record.kind, record.body["stage"]) == ("failed", "read_state")
    assert plant.device.writes == []


# -- postconditions and rollback -------------------------------------------------------


async def test_a_postcondition_that_never_holds_rolls_back_alerts_and_releases(
    redis: Redis
) -> None:
    async with ValveSimulator(initial={COIL: True}, stuck=True) as seized:
        plant = await plant_on(redis, seized)
        with pytest.raises(RolledBackError) as caught:
            await plant.executor.execute(close_v01())
        # The close, then the revert to the position read before the step.
        assert seized.writes == [(COIL, False), (COIL, True)]

    error = caught.value
    assert (error.strategy, error.rollback_ok) == ("revert", True)
    assert "not true within 1000 ms" in error.reason
    failed, rollback = await plant.records()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.kind == "rollback"
    assert rollback.body["rollbackParams"] == {"valveId": "V-01", "action": "OPEN"}
    assert (rollback.body["action"], rollback.body["ok"]) == ("valve_control@1.1.0", True)
    [alert] = await alerts(redis)
    assert alert["type"] == "capability.rollback"
    assert alert["payload"]["auditSeq"] == failed.seq
    assert alert["payload"]["strategy"] == "revert"
    assert await arbiter_on(redis).holders("valve:V-01") == {}
    assert plant.metric("connector_rollback_count_total", capability_id="valve_control",
                        strategy="revert") == 1


async def test_a_compensating_capability_gets_its_templated_parameters(redis: Redis) -> None:
    calls: list[Mapping[str, Any]] = []

    async def notify(params: Mapping[str, Any], context: CallContext) -> None:
        calls.append(params)

    async with ValveSimulator(initial={COIL: True}, stuck=True) as seized:
        plant = await plant_on(redis, seized)
        plant.registry.register(CapabilitySpec("notify_operator", "1.0.0", notify))
        await plant.register(plain_definition("notify_operator"))
        await plant.register(valve_definition(version="1.2.0", rollbackStrategy={
            "action": "notify_operator", "alertOnRollback": False,
            "params": {"text": "valve {{ params.valveId }} stuck", "was": "previous"}}))
        with pytest.raises(RolledBackError) as caught:
            await plant.executor.execute(close_v01())

    assert caught.value.strategy == "compensate"
    assert calls == [{"text": "valve V-01 stuck", "was": "previous"}]
    assert [r.kind for r in await plant.records()] == ["failed", "rollback"]
    assert await alerts(redis) == []  # alertOnRollback false and the rollback worked


async def test_a_failing_handler_without_rollback_alerts_and_stays_retryable(
    redis: Redis
) -> None:
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(), logger=CATALOG_LOG)
    registry = CapabilityRegistry()
    nowhere = ValveAddress("127.0.0.1", free_port(), timeout_s=0.3)
    registry.register(valve_control_spec({"V-01": nowhere}, policy=CallPolicy(
        timeout_s=2, max_retries=1, backoff_base_s=0.01)))
    await catalog.register(valve_definition(
        preconditions=[], rollbackStrategy="none").signed_with(key))
    executor = build_executor(redis, catalog, registry)

    with pytest.raises(CallFailedError, match="cannot connect"):
        await executor.execute(close_v01())

    [failed] = [record async for record in AuditChain(redis).records()]
    assert (failed.kind, failed.body["stage"], failed.body["strategy"]) == (
        "failed", "handler", "none")
    [alert] = await alerts(redis)
    assert (alert["type"], alert["payload"]["stage"]) == ("capability.failure", "handler")
    assert await arbiter_on(redis).holders("valve:V-01") == {}


async def test_a_failing_capability_opens_its_breaker_by_default(redis: Redis) -> None:
    attempts: list[Mapping[str, Any]] = []

    async def down(params: Mapping[str, Any], context: CallContext) -> None:
        attempts.append(params)
        raise ConnectionError("target down")

    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(), logger=CATALOG_LOG)
    registry = CapabilityRegistry()
    registry.register(CapabilitySpec("notify_operator", "1.0.0", down,
                                     policy=CallPolicy(max_retries=0)))
    await catalog.register(plain_definition("notify_operator").signed_with(key))
    executor = build_executor(redis, catalog, registry)
    request = CallRequest(capability_id="notify_operator", version_range="^1", params={},
                          idempotency_key="events:1-0:r:s", event={}, rule="r", step="s")

    for _ in range(5):  # seed 002: five failures within a minute open it
        with pytest.raises(CallFailedError, match="target down"):
            await executor.execute(request)
    with pytest.raises(CircuitOpenError):
        await executor.execute(request)
    assert len(attempts) == 5  # the sixth call never reached the target


# -- catalog refusals ---------------------------------------------------------------------


async def test_a_revoked_capability_is_refused_recorded_and_never_run(plant: Plant) -> None:
    await plant.catalog.revoke("valve_control", "<1.2.0", "CVE-2024-0001 in the coil driver")
    with pytest.raises(DeadLetterError, match="CVE-2024-0001"):
        await plant.executor.execute(close_v01())
    [record] = await plant.records()
    assert (record.kind, record.body["error"]) == ("refused", "RevokedCapabilityError")
    assert plant.device.writes == []


async def test_a_tampered_definition_is_refused(plant: Plant) -> None:
    stored_key = catalog_definitions_key("valve_control")
    stored = orjson.loads(await plant.redis.hget(stored_key, "1.1.0"))
    stored["preconditions"] = []
    await plant.redis.hset(stored_key, "1.1.0", orjson.dumps(stored).decode())
    with pytest.raises(DeadLetterError, match="does not match the definition"):
        await plant.executor.execute(close_v01())
    [record] = await plant.records()
    assert record.body["error"] == "SignatureMismatchError"
    assert plant.device.writes == []


async def test_an_unsigned_definition_is_refused(plant: Plant) -> None:
    unsigned = valve_definition().to_json().decode()  # written past the catalog's checks
    await plant.redis.hset(catalog_definitions_key("valve_control"), "1.1.0", unsigned)
    with pytest.raises(DeadLetterError, match="not signed"):
        await plant.executor.execute(close_v01())
    [record] = await plant.records()
    assert (record.kind, record.body["error"]) == ("refused", "UnsignedCapabilityError")
    assert plant.device.writes == []


async def test_a_definition_signed_by_an_untrusted_key_is_never_run(plant: Plant) -> None:
    stranger = PrivateKey.generate()
    elsewhere = Catalog(plant.redis, TrustStore([stranger.public()]), clock=SystemClock(),
                        logger=CATALOG_LOG)
    await elsewhere.register(valve_definition(version="1.3.0").signed_with(stranger))
    # The newest version is skipped: the trusted 1.1.0 runs instead.
    await plant.executor.execute(close_v01())
    [executed] = await plant.records()
    assert executed.body["version"] == "1.1.0"

    await plant.redis.hdel(catalog_definitions_key("valve_control"), "1.1.0")
    with pytest.raises(DeadLetterError, match="not a trusted key"):
        await plant.executor.execute(close_v01(action="OPEN"))
    assert (await plant.records())[-1].body["error"] == "UntrustedKeyError"
    assert plant.device.writes == [(COIL, False)]


async def test_a_handler_this_process_lacks_is_refused(plant: Plant) -> None:
    await plant.register(plain_definition("pump_control"))
    request = CallRequest("pump_control", None, {}, "s:3-0:r:s", {}, "r", "s")
    with pytest.raises(DeadLetterError, match="pump_control@1.0.0: not registered"):
        await plant.executor.execute(request)
    [record] = await plant.records()
    assert record.kind == "refused"


# -- permits and fencing ------------------------------------------------------------------


async def test_racing_executors_drive_the_valve_once(
    plant: Plant, redis_server: RedisServer
) -> None:
    other_redis = create_redis(redis_server.url)
    try:
        other = build_executor(other_redis, Catalog(other_redis, TrustStore(
            [plant.key.public()]), clock=SystemClock(), logger=CATALOG_LOG), plant.registry)
        first, second = await asyncio.gather(
            plant.executor.execute(close_v01("s:1-0:r:close")),
            other.execute(close_v01("s:2-0:r:close")))
    finally:
        await other_redis.aclose()
    outcomes = sorted(str(r.get("executed", True)) for r in (first, second))
    assert outcomes == ["False", "True"]  # the loser re-checks under the permit
    assert plant.device.writes == [(COIL, False)]
    kinds = sorted(r.kind for r in await plant.records())
    assert kinds == ["executed", "precondition_failed"]


async def test_the_permit_serializes_calls_on_one_resource(plant: Plant) -> None:
    inside, most_inside = 0, 0

    async def slow(params: Mapping[str, Any], context: CallContext) -> int | None:
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        return context.fencing_token

    plant.registry.register(CapabilitySpec("pump_control", "1.0.0", slow))
    await plant.register(plain_definition("pump_control"))
    requests = [CallRequest("pump_control", None, {"resource": "pump:P-1"}, f"s:{n}-0:r:s",
                            {}, "r", "s") for n in range(4)]
    tokens = await asyncio.gather(*(plant.executor.execute(r) for r in requests))
    assert most_inside == 1
    assert sorted(tokens) == [1, 2, 3, 4]


async def test_a_stalled_holders_late_write_is_fenced_off(plant: Plant) -> None:
    arbiter = arbiter_on(plant.redis)
    stalled = await arbiter.acquire("valve:V-01", ttl_s=0.2)  # then it stops renewing

    result = await plant.executor.execute(close_v01())  # waits out the stalled permit
    assert result["fencingToken"] > stalled.fencing_token

    context = CallContext(idempotency_key="late", event={}, redis=plant.redis,
                          clock=SystemClock(), logger=get_logger(test="stalled"),
                          fencing_token=stalled.fencing_token)
    spec = plant.registry.get("valve_control@1.1.0")
    with pytest.raises(StaleFencingTokenError):
        await spec.handler({"valveId": "V-01", "action": "OPEN"}, context)
    assert await plant.device.coil(COIL) is False
    assert plant.device.writes == [(COIL, False)]


async def test_every_outcome_leaves_one_valid_audit_chain(plant: Plant) -> None:
    await plant.executor.execute(close_v01("a"))
    await plant.executor.execute(close_v01("b"))  # already closed: precondition
    await plant.executor.execute(close_v01("c", action="OPEN"))
    report = await AuditChain(plant.redis).verify()
    assert report.ok and report.records == 3
