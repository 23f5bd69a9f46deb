"""A failing call's retry waits without holding an in-flight slot: the entry is
rescheduled (left pending, ours) and redelivered when its backoff is over, while
healthy entries keep flowing. Nothing is lost; nothing that completed runs twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallPolicy
from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.dead_letters import DeadLetterStream
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.errors import RetryLaterError
from framework.core.logs import get_logger
from framework.testing import free_port
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.builtin import register_builtin_capabilities
from providers.http import HttpActions
from providers.modbus import VALVE_RESOURCE, ValveAddress, valve_control_spec
from tests.consuming.test_consumer import until
from tests.execution_deps import execution_deps
from tests.rules_target import HttpTarget, TargetReply
from tests.trust.test_safe_executor import CATALOG_LOG, alerts, close_v01, valve_definition

STREAM = "work"
_GOOD = 20


def _rules(url: str) -> dict[str, object]:
    return {"version": 1, "rules": [{
        "name": "post", "match": {"stream": STREAM},
        "steps": [{"id": "call", "call": "http_call", "allowHosts": ["127.0.0.1"],
                   "params": {"method": "POST", "url": url + "/{{ payload.path }}",
                              "json": {"n": "{{ payload.n }}"}}}],
    }]}


def _event(path: str, n: int) -> dict[str, str]:
    return {"event": f'{{"type":"t","source":"s","payload":{{"path":"{path}","n":{n}}}}}'}


async def _consume(redis: Redis, target: HttpTarget, policy: CallPolicy,
                   done: object, **options: object) -> None:
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, http=HttpActions(policy=policy))
    deps = replace(execution_deps(redis, SystemClock()), reschedule_retries=True)
    handler = RulesHandler(parse_rules(_rules(target.url)), RegistryExecutor(registry, deps),
                           redis=redis)
    settings: dict[str, object] = {"streams": (STREAM,), "group": "g", "consumer": "c1",
                                   "start_id": "0", "block_ms": 50, "max_in_flight": 2,
                                   **options}
    consumer = Consumer(redis, handler, ConsumerOptions(**settings),  # type: ignore[arg-type]
                        clock=SystemClock(), logger=get_logger(test="retries"))
    task = asyncio.create_task(consumer.run())
    try:
        await until(done, timeout_s=20)  # type: ignore[arg-type]
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await actions.aclose()


async def test_healthy_entries_flow_while_failing_ones_back_off(redis: Redis) -> None:
    async with HttpTarget() as target:
        target.reply("/fail", TargetReply(503), TargetReply(503), TargetReply(200))
        target.reply("/ok", TargetReply(200))
        for n in range(2):  # both in-flight slots would be taken by their backoffs
            await redis.xadd(STREAM, _event("fail", n))
        for n in range(_GOOD):
            await redis.xadd(STREAM, _event("ok", n))

        async def settled() -> bool:
            return (len(target.received_at("/fail")) == 4
                    and (await redis.xpending(STREAM, "g"))["pending"] == 0)

        await _consume(redis, target, CallPolicy(backoff_base_s=1.0), settled)
    paths = [r.path for r in target.received]
    # Every healthy entry ran before either failing one was tried again.
    assert paths[:2] == ["/fail", "/fail"] and paths[2:2 + _GOOD] == ["/ok"] * _GOOD
    runs = Counter(r.headers["Idempotency-Key"] for r in target.received_at("/ok"))
    assert len(runs) == _GOOD and set(runs.values()) == {1}


async def test_an_entry_failing_every_time_is_dead_lettered_after_max_deliveries(
    redis: Redis,
) -> None:
    async with HttpTarget() as target:
        target.reply("/fail", TargetReply(503))
        entry_id = await redis.xadd(STREAM, _event("fail", 0))
        letters = DeadLetterStream(redis, STREAM)

        async def dead_lettered() -> bool:
            return await letters.count() == 1

        await _consume(redis, target, CallPolicy(backoff_base_s=0.05), dead_lettered,
                       max_deliveries=3)
    [letter] = await letters.read()
    assert letter.entry_id == entry_id and letter.attempts == 3
    assert len(target.received_at("/fail")) == 3


async def test_a_signed_calls_failed_attempt_is_audited_and_undone_before_its_redelivery(
    redis: Redis,
) -> None:
    key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([key.public()]), clock=SystemClock(), logger=CATALOG_LOG)
    registry = CapabilityRegistry()
    nowhere = ValveAddress("127.0.0.1", free_port(), timeout_s=0.3)
    registry.register(valve_control_spec({"V-01": nowhere}, policy=CallPolicy(
        timeout_s=2, max_retries=3, backoff_base_s=5.0)))
    await catalog.register(valve_definition(
        preconditions=[], rollbackStrategy="none").signed_with(key))
    deps = replace(execution_deps(redis, SystemClock()), reschedule_retries=True)
    executor = build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger),
        resources={"valve_control": VALVE_RESOURCE}))

    with pytest.raises(RetryLaterError, match="cannot connect") as raised:
        await executor.execute(close_v01())  # one attempt: no 5 s backoff waited here

    assert raised.value.retry_in_s == 5.0
    [failed] = [record async for record in AuditChain(redis).records()]
    assert (failed.kind, failed.body["stage"]) == ("failed", "handler")
    [alert] = await alerts(redis)
    assert alert["payload"]["stage"] == "handler"
    assert await ResourceArbiter(redis, clock=SystemClock(), logger=deps.logger).holders(
        "valve:V-01") == {}
