"""Circuit breakers: open after 5 failures a minute, fail fast (the target sees no more
requests), half-open after the cool-down, recover; state in Redis and Prometheus."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming.capabilities.breaker import (
    BreakerBoard,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    read_breakers,
)
from framework.consuming.capabilities.invocation import CallMetrics, invoke
from framework.consuming.capabilities.spec import CallContext, CallPolicy
from framework.core.cancellation import cancel_and_wait
from framework.core.clock import SystemClock
from framework.core.deadlines import Deadlines
from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    DeadLetterError,
    PermanentCallError,
)
from framework.core.host_policy import HostPolicy
from framework.core.keys import BREAKERS_OPENED_CHANNEL
from framework.core.logs import get_logger
from framework.core.settings import Settings
from framework.testing import FakeClock
from providers.http import HttpActions
from tests.consuming.test_consumer import until
from tests.rules_target import HttpTarget, TargetReply
from worker.cli.fleet import status
from worker.cli.output import Console

# The test targets listen on 127.0.0.1: allowed explicitly, as a deployment must.
LOCAL = HostPolicy.of(["127.0.0.1"])

NO_RETRY = CallPolicy(max_retries=0)


def test_five_failures_within_the_window_open_the_breaker() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy())
    for second in range(4):
        breaker.record_failure(float(second))
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(59.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.refusal_s(60.0) == pytest.approx(29.0)


def test_failures_spread_over_more_than_a_minute_do_not_open_it() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy())
    for second in (0.0, 20.0, 40.0, 60.0, 80.0, 100.0):
        breaker.record_failure(second)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_a_failed_probe_reopens() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy(failure_threshold=1, cooldown_s=10))
    breaker.record_failure(0.0)
    assert breaker.refusal_s(5.0) == pytest.approx(5.0)
    assert breaker.refusal_s(10.0) is None  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.refusal_s(10.5) is not None  # a second caller while probing
    breaker.record_failure(11.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.refusal_s(20.0) == pytest.approx(1.0)
    assert breaker.refusal_s(21.0) is None
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.refusal_s(21.5) is None


# One deadline timer set for the calls of this module, as a process has.
DEADLINES = Deadlines()
LOG = get_logger(test="breaker")


def _context(redis: Redis, clock: FakeClock) -> CallContext:
    return CallContext(idempotency_key="s:1-0:r:notify", event={}, redis=redis, clock=clock,
                       logger=get_logger(test="breaker"))


async def test_failing_target_opens_the_breaker_then_it_half_opens_and_recovers(
    redis: Redis,
) -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    board = BreakerBoard(redis=redis, clock=clock, logger=LOG, owner="consumer-1",
                         gauge=CallMetrics.create(registry).breaker_state)
    actions = HttpActions(policy=NO_RETRY, hosts=LOCAL)
    spec = actions.specs()[0]
    try:
        async with HttpTarget() as target:
            target.reply("/hook", TargetReply(500, {"error": "down"}))
            params = {"method": "POST", "url": f"{target.url}/hook", "json": {}}
            breaker = spec.breaker_key(params)
            assert breaker == f"http_call@127.0.0.1:{target.url.rsplit(':', 1)[1]}"
            for _ in range(5):
                with pytest.raises(CallFailedError, match="500"):
                    await invoke(spec, params, _context(redis, clock),
                                 deadlines=DEADLINES, breakers=board)
                await clock.advance(1.0)
            assert board.state(breaker) is BreakerState.OPEN

            with pytest.raises(CircuitOpenError) as caught:
                await invoke(spec, params, _context(redis, clock),
                             deadlines=DEADLINES, breakers=board)
            assert caught.value.breaker == breaker
            assert len(target.received) == 5  # failing fast: no sixth request
            states = await read_breakers(redis)
            assert [(s["breaker"], s["owner"], s["state"]) for s in states] == [
                (breaker, "consumer-1", "open")]
            assert registry.get_sample_value("connector_breaker_state",
                                             {"breaker": breaker}) == 2

            target.reply("/hook", TargetReply(200, {"ok": True}))
            await clock.advance(30.0)
            result = await invoke(spec, params, _context(redis, clock),
                                  deadlines=DEADLINES, breakers=board)
    finally:
        await actions.aclose()
    assert result == {"status": 200, "json": {"ok": True}}
    assert len(target.received) == 6
    assert board.state(breaker) is BreakerState.CLOSED
    assert [s["state"] for s in await read_breakers(redis)] == ["closed"]
    assert registry.get_sample_value("connector_breaker_state", {"breaker": breaker}) == 0


async def test_breakers_are_per_target_host(redis: Redis) -> None:
    clock = FakeClock()
    board = BreakerBoard(redis=redis, clock=clock, logger=LOG)
    actions = HttpActions(policy=NO_RETRY, hosts=LOCAL)
    spec = actions.specs()[0]
    try:
        async with HttpTarget() as down, HttpTarget() as up:
            down.reply("/x", TargetReply(503))
            up.reply("/x", TargetReply(200, {"ok": True}))
            for _ in range(5):
                with pytest.raises(CallFailedError, match="503"):
                    await invoke(spec, {"url": f"{down.url}/x"}, _context(redis, clock),
                                 deadlines=DEADLINES,
                                 breakers=board)
            with pytest.raises(CircuitOpenError):
                await invoke(spec, {"url": f"{down.url}/x"}, _context(redis, clock),
                             deadlines=DEADLINES,
                             breakers=board)
            result = await invoke(spec, {"url": f"{up.url}/x"}, _context(redis, clock),
                                  deadlines=DEADLINES,
                                  breakers=board)
    finally:
        await actions.aclose()
    assert result["status"] == 200


async def test_open_breaker_with_on_open_deadletter_dead_letters(redis: Redis) -> None:
    clock = FakeClock()
    board = BreakerBoard(clock=clock, logger=LOG)
    policy = CallPolicy(max_retries=0, on_open="deadletter",
                        breaker=BreakerPolicy(failure_threshold=1))
    actions = HttpActions(policy=policy, hosts=LOCAL)
    spec = actions.specs()[0]
    try:
        async with HttpTarget() as target:
            target.reply("/x", TargetReply(500))
            with pytest.raises(CallFailedError, match="500"):
                await invoke(spec, {"url": f"{target.url}/x"}, _context(redis, clock),
                             deadlines=DEADLINES,
                             breakers=board)
            with pytest.raises(DeadLetterError, match="circuit breaker .* is open"):
                await invoke(spec, {"url": f"{target.url}/x"}, _context(redis, clock),
                             deadlines=DEADLINES,
                             breakers=board)
    finally:
        await actions.aclose()
    assert len(target.received) == 1


async def test_non_retryable_answers_do_not_count_against_the_breaker(redis: Redis) -> None:
    clock = FakeClock()
    board = BreakerBoard(clock=clock, logger=LOG)
    actions = HttpActions(policy=NO_RETRY, hosts=LOCAL)
    spec = actions.specs()[0]
    try:
        async with HttpTarget() as target:
            target.reply("/x", TargetReply(404, {"error": "no such thing"}))
            for _ in range(6):
                with pytest.raises(PermanentCallError):
                    await invoke(spec, {"url": f"{target.url}/x"}, _context(redis, clock),
                                 deadlines=DEADLINES,
                                 breakers=board)
    finally:
        await actions.aclose()
    assert len(target.received) == 6
    assert board.state(spec.breaker_key({"url": f"{target.url}/x"})) is BreakerState.CLOSED


async def test_status_shows_the_published_breakers(redis: Redis, tmp_path: Path) -> None:
    clock = FakeClock()
    board = BreakerBoard(redis=redis, clock=clock, logger=LOG, owner="host-a:41")
    policy = BreakerPolicy(failure_threshold=1)
    await board.record_failure("http_call@hub.example:443", policy)
    config = tmp_path / "connectors.json"
    config.write_text('{"connectors": []}')
    out = io.StringIO()
    settings = Settings(CONNECTORS_CONFIG_PATH=str(config))
    code = await status(redis, settings, Console(out=out, err=io.StringIO()), as_json=False)
    assert code == 0
    [row] = [line for line in out.getvalue().splitlines() if "hub.example" in line]
    assert row.split()[:4] == ["http_call@hub.example:443", "host-a:41", "open", "1"]


async def test_a_breaker_opened_in_one_process_opens_in_the_others(redis: Redis) -> None:
    policy = BreakerPolicy(failure_threshold=5, window_s=60, cooldown_s=30)
    here = BreakerBoard(redis=redis, clock=SystemClock(), logger=LOG, owner="host-a:1")
    there = BreakerBoard(redis=redis, clock=SystemClock(), logger=LOG, owner="host-b:2")
    key = "http_call@down.example.org"
    announcements = redis.pubsub(ignore_subscribe_messages=True)
    await announcements.subscribe(BREAKERS_OPENED_CHANNEL)
    watchers = [asyncio.create_task(board.watch()) for board in (here, there)]
    try:
        await asyncio.wait_for(asyncio.gather(here.watching.wait(), there.watching.wait()), 5)
        assert await there.refusal_s(key, policy) is None  # closed: its calls go through

        for _ in range(5):
            await here.record_failure(key, policy)
        assert here.state(key) is BreakerState.OPEN

        async def refused_there() -> bool:
            return await there.refusal_s(key, policy) is not None

        await until(refused_there)
        assert there.state(key) is BreakerState.OPEN
        refusal_s = await there.refusal_s(key, policy)
        assert refusal_s is not None and 25 < refusal_s <= 30  # until the first half-opens
        # Only the breaker its own failures opened announced it: one message, no echo.
        messages = []
        deadline = asyncio.get_running_loop().time() + 0.5
        while asyncio.get_running_loop().time() < deadline:  # None: subscribe replies too
            message = await announcements.get_message(timeout=0.1)
            if message is not None:
                messages.append(orjson.loads(message["data"]))
        assert messages == [{"breaker": key, "owner": "host-a:1", "retryInS": 30.0}]
    finally:
        await cancel_and_wait(*watchers)
        await announcements.aclose()  # type: ignore[no-untyped-call]


async def test_a_malformed_announcement_is_ignored_and_the_watch_goes_on(redis: Redis) -> None:
    policy = BreakerPolicy(cooldown_s=30)
    board = BreakerBoard(redis=redis, clock=SystemClock(), logger=LOG, owner="host-b:2")
    watcher = asyncio.create_task(board.watch())
    try:
        await asyncio.wait_for(board.watching.wait(), 5)
        await redis.publish(BREAKERS_OPENED_CHANNEL, "not json")
        await redis.publish(BREAKERS_OPENED_CHANNEL, orjson.dumps(
            {"breaker": "x", "owner": "host-a:1", "retryInS": 30}))

        async def refused() -> bool:
            return await board.refusal_s("x", policy) is not None

        await until(refused)
    finally:
        await cancel_and_wait(watcher)
