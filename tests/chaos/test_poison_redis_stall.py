"""A Redis stall is not blamed on a healthy target: while Redis is frozen (SIGSTOP),
calls to a target that answers at once neither time out nor count against its
breaker, and no completed call runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from framework.consuming import BreakerBoard, RegistryExecutor
from framework.consuming.capabilities.invocation import invoke
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallContext, CallPolicy, CapabilitySpec
from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.clock import SystemClock
from framework.core.connections import create_redis
from framework.core.deadlines import Deadlines
from framework.core.errors import RedisUnavailableError
from framework.core.logs import get_logger
from framework.testing import RedisServer
from providers.builtin import register_builtin_capabilities
from providers.http import HttpActions
from providers.modbus import valve_control_spec
from providers.modbus.simulator import ValveSimulator
from tests.consuming.test_consumer import until
from tests.consuming.test_rules_handler_consumer import STREAM, event
from tests.execution_deps import execution_deps
from tests.rules_target import HttpTarget, TargetReply

_FREEZE_S = 3.0
_EVENTS = 30


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _rules(url: str) -> dict[str, object]:
    return {"version": 1, "rules": [{
        "name": "act", "match": {"stream": STREAM},
        "steps": [{"id": "post", "call": "http_call", "timeoutMs": 1000,
                   "allowHosts": ["127.0.0.1"],
                   "params": {"method": "POST", "url": url + "/act",
                              "json": {"node": "{{ payload.nodeId }}"}}}],
    }]}


@pytest.mark.slow
async def test_a_frozen_redis_times_out_no_call_and_opens_no_breaker(
    private_redis: RedisServer,
) -> None:
    redis = create_redis(private_redis.url)
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, http=HttpActions(policy=CallPolicy()))
    deps = execution_deps(redis, SystemClock())
    loop = asyncio.get_running_loop()
    frozen = asyncio.Event()
    try:
        async with HttpTarget() as target:
            handler = RulesHandler(parse_rules(_rules(target.url)),
                                   RegistryExecutor(registry, deps), redis=redis)
            target.reply("/act", TargetReply(200, {"ok": True}))
            for i in range(_EVENTS):
                await redis.xadd(STREAM, event(1.0, f"n{i}"))
            consumer = Consumer(redis, handler, ConsumerOptions(
                streams=(STREAM,), group="g", consumer="c1", start_id="0", block_ms=50,
                max_in_flight=8, claim_idle_ms=60_000), clock=SystemClock(),
                logger=get_logger(test="stall"))
            task = asyncio.create_task(consumer.run())

            async def all_done() -> bool:
                pending = (await redis.xpending(STREAM, "g"))["pending"]
                return not pending and len({r.json()["node"] for r in target.received}) == _EVENTS

            await until(lambda: len(target.received) >= 3, timeout_s=10)
            os.kill(private_redis.pid, signal.SIGSTOP)  # calls in flight
            frozen.set()
            loop.call_later(_FREEZE_S, os.kill, private_redis.pid, signal.SIGCONT)
            try:
                await until(all_done, timeout_s=30)
            finally:
                consumer.stop()
                await asyncio.wait_for(task, 10)
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        await actions.aclose()
        await redis.aclose()
    assert frozen.is_set()
    runs = Counter(r.headers["Idempotency-Key"] for r in target.received)
    assert set(runs.values()) == {1}, f"ran more than once: {runs}"
    host = target.url.removeprefix("http://")
    breaker = deps.breakers.breaker(f"http_call@{host}", CallPolicy().breaker)
    assert breaker.failures == 0


async def _frozen_for(server: RedisServer, seconds: float) -> None:
    os.kill(server.pid, signal.SIGSTOP)
    asyncio.get_running_loop().call_later(seconds, os.kill, server.pid, signal.SIGCONT)


def _valve_call(redis: Redis, device: ValveSimulator) -> tuple[CapabilitySpec, CallContext]:
    spec = valve_control_spec({"V-01": device.address(3)})
    context = CallContext(idempotency_key="s:1-0:r:s", event={}, redis=redis,
                          clock=SystemClock(), logger=get_logger(test="stall"),
                          fencing_token=7)
    return spec, context


async def test_the_fencing_check_waiting_on_a_frozen_redis_is_not_the_targets_time(
    private_redis: RedisServer,
) -> None:
    """valve_control checks its fencing token in Redis before it writes the coil: a
    Redis stall there is not the device's slowness (no timeout, no breaker failure)."""
    redis = create_redis(private_redis.url)
    breakers = BreakerBoard(clock=SystemClock(), logger=get_logger(test="stall"))
    policy = CallPolicy(timeout_s=0.5, max_retries=0)
    try:
        async with ValveSimulator(initial={3: True}) as device:
            spec, context = _valve_call(redis, device)
            await _frozen_for(private_redis, 1.5)
            result = await invoke(spec, {"valveId": "V-01", "action": "CLOSE"}, context,
                                  deadlines=Deadlines(), breakers=breakers, policy=policy)
            assert result["action"] == "CLOSE" and device.writes == [(3, False)]
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        await redis.aclose()
    key = spec.breaker_key({"valveId": "V-01"})
    assert breakers.breaker(key, policy.breaker).failures == 0


async def test_a_redis_failure_inside_a_call_is_not_counted_against_the_target(
    private_redis: RedisServer,
) -> None:
    # A client that gives up on Redis sooner than the call's own timeout would fire.
    redis = Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=0.3)
    breakers = BreakerBoard(clock=SystemClock(), logger=get_logger(test="stall"))
    policy = CallPolicy(timeout_s=5.0, max_retries=2, backoff_base_s=0.01)
    try:
        async with ValveSimulator(initial={3: True}) as device:
            spec, context = _valve_call(redis, device)
            await _frozen_for(private_redis, 1.0)
            with pytest.raises(RedisUnavailableError):
                await invoke(spec, {"valveId": "V-01", "action": "CLOSE"}, context,
                             deadlines=Deadlines(), breakers=breakers, policy=policy)
            assert device.writes == []
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        await redis.aclose()
    key = spec.breaker_key({"valveId": "V-01"})
    assert breakers.breaker(key, policy.breaker).failures == 0
