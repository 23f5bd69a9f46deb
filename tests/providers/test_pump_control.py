"""``pump_control`` against a real pymodbus slave, through the signed catalog's
pipeline: start, speed and stop read back; every parameter error; the interlocks
(dry-running, inlet closed) refusing a start; a device that fails (retries, then
the breaker opens); a pump that does not start (the rollback stops it, audited);
a redelivered event that does not command twice; hosts only from the
configuration and the step's allow-list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import (
    ConfigError,
    HostPolicy,
    RefusedTargetError,
    SystemClock,
    TransientSourceError,
    get_logger,
)
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import free_port
from providers.modbus.register_simulator import RegisterSimulator
from providers.plant import PlantSettings, pump_control_spec
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig
from tests.providers.plant_rig import (
    INLET_INPUT,
    LEVEL_REGISTER,
    RUN_COIL,
    SPEED_REGISTER,
    healthy,
    plant_settings,
    quick_definition,
    run_twice,
)
from tests.silent_peer import silent_peer

DEFINITION = definition_path("plant", "pump_control")


@pytest.fixture
async def plc() -> AsyncIterator[RegisterSimulator]:
    async with RegisterSimulator() as device:
        healthy(device)
        yield device


async def rig_for(redis: Redis, settings: PlantSettings, definition: Path = DEFINITION) -> Rig:
    return await safe_rig(redis, [pump_control_spec(settings, policy=FAST_POLICY)],
                          [definition])


def start(speed: float | None = 42.5, **extra: Any) -> dict[str, Any]:
    return {"pumpId": "P-01", "action": "start", **({"speed": speed} if speed else {}),
            **extra}


def context(redis: Redis, hosts: HostPolicy | None = None) -> CallContext:
    return CallContext(idempotency_key="plant:1-0:r:s", event={}, redis=redis,
                       clock=SystemClock(), logger=get_logger(test="pump"), hosts=hosts)


async def test_a_start_at_a_speed_is_written_read_back_and_audited(
        redis: Redis, plc: RegisterSimulator) -> None:
    rig = await rig_for(redis, plant_settings(plc))

    result = await rig.call("pump_control", start(42.5))

    assert result["action"] == "start" and result["fencingToken"] is not None
    # Speed first (425 = 42.5 / 0.1), then the run coil.
    assert plc.writes == [("holding", SPEED_REGISTER, [425]), ("coil", RUN_COIL, [1])]
    [record] = await rig.audit()
    assert record.kind == "executed"
    assert record.body["stateBefore"]["running"] is False
    assert record.body["stateAfter"] == {"pumpId": "P-01", "reachable": True, "running": True,
                                         "speed": 42.5,
                                         "signals": {"level": 0.8, "inletOpen": True}}


async def test_set_speed_and_stop(redis: Redis, plc: RegisterSimulator) -> None:
    rig = await rig_for(redis, plant_settings(plc))
    await rig.call("pump_control", start(None), key="k:1")
    await rig.call("pump_control", {"pumpId": "P-01", "action": "set_speed", "speed": 77},
                   key="k:2")
    await rig.call("pump_control", {"pumpId": "P-01", "action": "stop"}, key="k:3")

    assert plc.writes == [("coil", RUN_COIL, [1]), ("holding", SPEED_REGISTER, [770]),
                          ("coil", RUN_COIL, [0])]
    assert await rig.kinds() == ["executed"] * 3


@pytest.mark.parametrize(("level", "inlet", "refused_by"), [
    (5, True, "state.signals.level > 0.2"),  # 0.05 m: the pump would run dry
    (80, False, "state.signals.inletOpen == true"),
])
async def test_an_interlock_refuses_a_start_and_nothing_is_written(
        redis: Redis, plc: RegisterSimulator, level: int, inlet: bool, refused_by: str) -> None:
    plc.set_words("input", LEVEL_REGISTER, [level])
    plc.set_bits("discrete", INLET_INPUT, [inlet])
    rig = await rig_for(redis, plant_settings(plc))

    result = await rig.call("pump_control", start())

    assert result["executed"] is False and result["outcome"] == "precondition_failed"
    assert refused_by in result["condition"]
    assert plc.writes == []
    [record] = await rig.audit()
    assert record.kind == "precondition_failed"
    # A stop is never held back by an interlock.
    await rig.call("pump_control", {"pumpId": "P-01", "action": "stop"}, key="k:stop")
    assert plc.writes == [("coil", RUN_COIL, [0])]


async def test_a_pump_that_does_not_start_is_stopped_by_the_rollback_and_audited(
        redis: Redis, plc: RegisterSimulator, tmp_path: Path) -> None:
    plc.stuck = True  # acknowledges, never moves: the run coil reads back OFF
    rig = await rig_for(redis, plant_settings(plc), quick_definition(DEFINITION, tmp_path))

    with pytest.raises(RolledBackError) as caught:
        await rig.call("pump_control", start(30))

    assert caught.value.rollback_ok is True
    assert plc.writes[-1] == ("coil", RUN_COIL, [0])  # the rollback's stop
    assert plc.writes[:2] == [("holding", SPEED_REGISTER, [300]), ("coil", RUN_COIL, [1])]
    failed, rollback = await rig.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.kind == "rollback" and rollback.body["ok"] is True
    assert rollback.body["rollbackParams"] == {"pumpId": "P-01", "action": "stop",
                                               "speed": None}
    assert len(await rig.alerts()) == 1


async def test_a_busy_device_is_retried_then_the_breaker_opens(
        redis: Redis, plc: RegisterSimulator) -> None:
    plc.refuse_writes[RUN_COIL] = ExcCodes.DEVICE_BUSY
    rig = await rig_for(redis, plant_settings(plc))

    with pytest.raises(CallFailedError, match=r"after 3 attempts: .*coil 0 refused: "
                       r"Modbus exception 6"):
        await rig.call("pump_control", start(None))
    assert plc.refused_writes == 3  # the call and its two retries
    # Three failures opened the breaker: the rollback's stop is held back too, and says so.
    failed, rollback = await rig.audit()
    assert failed.kind == "failed" and rollback.body["ok"] is False
    assert "circuit breaker pump_control@P-01 is open" in rollback.body["error"]
    with pytest.raises(CircuitOpenError):
        await rig.call("pump_control", start(None), key="k:again")
    assert plc.refused_writes == 3  # an open breaker spares the device


async def test_a_device_that_is_gone_refuses_the_step_by_its_precondition(
        redis: Redis) -> None:
    rig = await rig_for(redis, plant_settings(free_port()))
    result = await rig.call("pump_control", start())
    assert result["outcome"] == "precondition_failed"
    assert result["condition"] == "state.reachable == true"


async def test_a_redelivered_event_does_not_command_twice(
        redis: Redis, plc: RegisterSimulator) -> None:
    spec = pump_control_spec(plant_settings(plc))
    await run_twice(redis, spec, {"call": "pump_control",
                                  "params": {"pumpId": "P-01", "action": "start", "speed": 50}})
    assert plc.writes == [("holding", SPEED_REGISTER, [500]), ("coil", RUN_COIL, [1])]


@pytest.mark.parametrize(("params", "message"), [
    ({}, "field pumpId: Field required; field action: Field required"),
    ({"pumpId": "", "action": "start"}, "field pumpId: String should have at least 1"),
    ({"pumpId": "P-01", "action": "run"}, "field action: Input should be 'start', 'stop' "
                                          "or 'set_speed'"),
    ({"pumpId": "P-01", "action": "set_speed"}, "set_speed needs speed"),
    ({"pumpId": "P-01", "action": "stop", "speed": 10}, "stop takes no speed"),
    ({"pumpId": "P-01", "action": "start", "speed": "fast"}, "field speed: Input should be "
                                                             "a valid number"),
    ({"pumpId": "P-01", "action": "start", "host": "10.0.0.9"},
     "field host: Extra inputs are not permitted"),
    ({"pumpId": "P-99", "action": "start"}, "pump 'P-99' is not configured (PLANT_CONFIG; "
                                            "known: P-01)"),
    ({"pumpId": "P-01", "action": "start", "speed": 120}, "speed 120.0 of pump P-01 is "
                                                          "outside 0.0..100.0"),
])
async def test_every_parameter_error_names_the_parameter_and_writes_nothing(
        redis: Redis, plc: RegisterSimulator, params: dict[str, Any], message: str) -> None:
    spec = pump_control_spec(plant_settings(plc))
    with pytest.raises(ValueError, match="pump_control") as raised:
        await spec.handler(params, context(redis))
    assert message in str(raised.value)
    assert plc.writes == []


async def test_the_host_comes_from_the_configuration_and_obeys_allow_hosts(
        redis: Redis, plc: RegisterSimulator) -> None:
    spec = pump_control_spec(plant_settings(plc))
    with pytest.raises(RefusedTargetError, match="127.0.0.1:.* is not in the allow-list"):
        await spec.handler(start(None), context(redis, HostPolicy.of(["10.0.0.20"])))
    assert plc.writes == []


@pytest.mark.parametrize(("config", "message"), [
    ('{"devices": {}, "pumps": {"P": {"device": "x", "run": {"coil": 0}}}}',
     "pump P: device 'x' is not in devices (none)"),
    ('{"devices": {"d": {"protocol": "modbus"}}}', "a modbus device needs host"),
    ('{"devices": {"d": {"protocol": "opcua", "endpoint": "http://x"}}}',
     "field devices.d.endpoint: String should match pattern"),
    ('{"devices": {"d": {"protocol": "modbus", "host": "h"}}, '
     '"pumps": {"P": {"device": "d", "run": {"discrete": 0}}}}', "run: a discrete is read-only"),
    ('{"devices": {"d": {"protocol": "modbus", "host": "h"}}, '
     '"pumps": {"P": {"device": "d", "run": {"coil": 0, "holding": 1}}}}',
     "a point is exactly one of coil, discrete, holding, input, node (given: coil, holding)"),
    ("{not json", "PLANT_CONFIG_JSON: field (root): Invalid JSON"),
])
def test_a_bad_plant_configuration_names_the_variable_and_the_field(
        config: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        PlantSettings.from_env({"PLANT_CONFIG_JSON": config})
    assert message in str(raised.value)
    assert str(raised.value).startswith("PLANT_CONFIG_JSON: ")


# -- hostile peers ------------------------------------------------------------------------


async def test_a_slow_device_fails_within_its_timeout_and_reads_as_unreachable(
        redis: Redis, plc: RegisterSimulator) -> None:
    plc.delay_s = 3.0  # every answer 3 s late
    spec = pump_control_spec(plant_settings(plc, devices={"plc-1": {
        "protocol": "modbus", "host": "127.0.0.1", "port": plc.port, "timeoutMs": 300}}))
    assert spec.read_state is not None
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match=r"modbus device 127\.0\.0\.1:\d+: no answer "
                       r"within 300 ms \(timeoutMs\)"):
        await spec.handler(start(None), context(redis))
    state = await spec.read_state(start(None), context(redis))
    assert state["reachable"] is False
    assert time.monotonic() - started < 2 * plc.delay_s  # neither waited for the answer


async def test_an_opcua_server_that_never_answers_fails_within_the_timeout(
        redis: Redis) -> None:
    """A peer that accepts the connection and then says nothing (no OPC-UA Acknowledge)."""
    async with silent_peer() as peer:
        plant = PlantSettings.model_validate({
            "devices": {"opc": {"protocol": "opcua",
                                "endpoint": f"opc.tcp://127.0.0.1:{peer.port}/",
                                "timeoutMs": 500}},
            "pumps": {"P-01": {"device": "opc", "run": {"node": "ns=2;s=Run"}}}})
        with pytest.raises(TransientSourceError, match=rf"opcua device 127\.0\.0\.1:{peer.port}: "
                           r"(no answer within 500 ms|cannot connect)"):
            await pump_control_spec(plant).handler(start(None), context(redis))
        assert peer.accepted  # it did connect: the deadline, not a refusal, ended the call


def test_the_plant_configuration_file_is_read_and_a_missing_one_named(tmp_path: Path) -> None:
    path = tmp_path / "plant.json"
    path.write_text('{"devices": {"d": {"protocol": "modbus", "host": "10.0.0.5"}}}')
    assert PlantSettings.from_env({"PLANT_CONFIG": str(path)}).devices["d"].host == "10.0.0.5"
    assert PlantSettings.from_env({}) == PlantSettings()
    with pytest.raises(ConfigError, match=r"PLANT_CONFIG \(.*nowhere.json\): cannot read: "):
        PlantSettings.from_env({"PLANT_CONFIG": str(tmp_path / "nowhere.json")})
