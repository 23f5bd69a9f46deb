"""The ``valve_control`` handler and read function against a real Modbus TCP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming.capabilities.spec import CallContext
from framework.core.clock import SystemClock
from framework.core.errors import PermanentSourceError, StaleFencingTokenError, TransientSourceError
from framework.core.logs import get_logger
from framework.testing import free_port
from providers.modbus import ValveAddress, valve_control_spec
from providers.modbus.simulator import ValveSimulator


@pytest.fixture
async def device() -> AsyncIterator[ValveSimulator]:
    async with ValveSimulator(initial={3: True}) as simulator:
        yield simulator


def context(redis: Redis, fencing_token: int | None = None) -> CallContext:
    return CallContext(idempotency_key="test:1-0:rule:step", event={}, redis=redis,
                       clock=SystemClock(), logger=get_logger(test="valve"),
                       fencing_token=fencing_token)


def params(**extra: Any) -> dict[str, Any]:
    return {"valveId": "V-01", **extra}


async def test_close_writes_the_coil_and_the_read_function_sees_it(
    redis: Redis, device: ValveSimulator
) -> None:
    spec = valve_control_spec({"V-01": device.address(3)})
    assert spec.read_state is not None
    before = await spec.read_state(params(), context(redis))
    assert before == {"valveId": "V-01", "reachable": True, "closed": False,
                      "position": "OPEN", "action": "OPEN"}

    result = await spec.handler(params(action="close"), context(redis))

    assert result == {"valveId": "V-01", "action": "CLOSE", "fencingToken": None}
    assert device.writes == [(3, False)]
    assert await device.coil(3) is False
    after = await spec.read_state(params(), context(redis))
    assert (after["closed"], after["position"], after["action"]) == (True, "CLOSED", "CLOSE")


async def test_the_address_may_come_from_the_parameters(
    redis: Redis, device: ValveSimulator
) -> None:
    spec = valve_control_spec()
    await spec.handler(params(action="OPEN", host=device.host, port=device.port, coil=5),
                       context(redis))
    assert await device.coil(5) is True


async def test_a_stale_fencing_token_is_refused_before_the_coil_moves(
    redis: Redis, device: ValveSimulator
) -> None:
    spec = valve_control_spec({"V-01": device.address(3)})
    await spec.handler(params(action="CLOSE"), context(redis, fencing_token=7))
    with pytest.raises(StaleFencingTokenError, match="fencing token 6 is stale"):
        await spec.handler(params(action="OPEN"), context(redis, fencing_token=6))
    assert device.writes == [(3, False)]
    assert not spec.policy.retryable(StaleFencingTokenError(
        resource="x", token=1, newest_token=2))


async def test_bad_parameters_name_what_is_wrong(redis: Redis, device: ValveSimulator) -> None:
    spec = valve_control_spec({"V-01": device.address(3)})
    with pytest.raises(ValueError, match="action must be OPEN or CLOSE, not 'TOGGLE'"):
        await spec.handler(params(action="TOGGLE"), context(redis))
    with pytest.raises(ValueError, match="valve V-09 is not configured"):
        await spec.handler({"valveId": "V-09", "action": "OPEN"}, context(redis))
    with pytest.raises(ValueError, match="valveId"):
        await spec.handler({"action": "OPEN"}, context(redis))
    assert device.writes == []


async def test_an_illegal_coil_address_is_a_permanent_error(
    redis: Redis, device: ValveSimulator
) -> None:
    spec = valve_control_spec({"V-01": device.address(999)})
    with pytest.raises(PermanentSourceError, match="write coil 999"):
        await spec.handler(params(action="OPEN"), context(redis))


async def test_an_unreachable_device_is_transient_and_reads_as_unreachable(
    redis: Redis
) -> None:
    spec = valve_control_spec({"V-01": ValveAddress("127.0.0.1", free_port(), timeout_s=0.5)})
    with pytest.raises(TransientSourceError, match="cannot connect"):
        await spec.handler(params(action="OPEN"), context(redis))
    assert spec.read_state is not None
    state = await spec.read_state(params(), context(redis))
    assert (state["reachable"], state["closed"]) == (False, None)


async def test_a_stuck_device_acknowledges_but_does_not_move(redis: Redis) -> None:
    async with ValveSimulator(initial={0: True}, stuck=True) as stuck:
        spec = valve_control_spec({"V-01": stuck.address(0)})
        await spec.handler(params(action="CLOSE"), context(redis))
        assert stuck.writes == [(0, False)]
        assert await stuck.coil(0) is True
