"""``gpio_write`` through the seven-step executor. Remote mode: a simulated gateway
on a real Mosquitto (success read back, timeout, a line that does not take →
rollback to the previous value, audited; a silent gateway → refused precondition;
bad parameters). Local mode: libgpiod v2 on a ``gpio-sim`` chip where the kernel
provides one (skipped otherwise, saying why), and the refusals that need no chip."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import gpiod
import pytest
from gpiod.line import Direction
from redis.asyncio import Redis

from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    DeadLetterError,
    RolledBackError,
)
from framework.testing import MosquittoServer
from providers.devices import DeviceSimulator
from providers.devices.capabilities import GpioRefusedError, LocalGpio
from tests.providers.devices.caps_rig import CapsRig, caps_rig
from tests.providers.devices.conftest import broker_of
from tests.providers.devices.gpio_sim import SimChip, gpio_sim, gpio_sim_missing

MISSING = gpio_sim_missing()


@pytest.fixture
def sim_chip() -> Iterator[SimChip]:
    if MISSING is not None:
        pytest.skip(MISSING)
    with gpio_sim() as chip:
        yield chip


@pytest.fixture
async def rig(redis: Redis, mosquitto: MosquittoServer) -> AsyncIterator[CapsRig]:
    gpio = LocalGpio(["gpiochip250"])  # allowed, absent on any ordinary machine
    made = await caps_rig(redis, broker_of(mosquitto), gpio=gpio)
    yield made
    await made.close()
    gpio.close()


def remote(device_id: str, line: int, value: int, **extra: object) -> dict[str, object]:
    return {"target": "remote", "deviceId": device_id, "line": line, "value": value, **extra}


async def test_remote_write_is_read_back_and_audited(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    result = await rig.run("gpio_write", remote("sim-00001", 4, 1))
    assert (result["value"], result["previous"]) == (1, 0)
    assert simulator.devices["sim-00001"].extras.gpio[4] == 1
    [executed] = await rig.audit()
    assert executed.kind == "executed"
    assert (executed.body["stateBefore"]["value"], executed.body["stateAfter"]["value"]) == (0, 1)


@pytest.mark.slow
async def test_remote_write_times_out_when_the_gateway_does_not_answer(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    simulator.devices["sim-00002"].ignored_commands.add("gpio_write")
    with pytest.raises(CallFailedError, match="DeviceTimeoutError: device sim-00002"):
        await rig.run("gpio_write", remote("sim-00002", 4, 1, timeoutS=0.3))
    assert await rig.kinds() == ["failed", "rollback"]
    assert simulator.devices["sim-00002"].extras.gpio[4] == 0


@pytest.mark.slow
async def test_a_line_that_does_not_take_is_driven_back_and_audited(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    device = simulator.devices["sim-00003"]
    device.extras.gpio[6] = 1
    device.no_effect.add("gpio_write")  # acknowledged, never driven
    with pytest.raises(RolledBackError, match=r"state.value == params.value.*revert done"):
        await rig.run("gpio_write", remote("sim-00003", 6, 0))
    failed, rollback = await rig.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert (rollback.kind, rollback.body["ok"]) == ("rollback", True)
    assert rollback.body["rollbackParams"]["value"] == 1  # what the line was before
    assert await rig.alerts()  # alertOnRollback: a physical output


async def test_a_silent_gateway_is_a_refused_precondition(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    simulator.silence("sim-00004", 60)
    outcome = await rig.run("gpio_write", remote("sim-00004", 1, 1))
    assert (outcome["outcome"], outcome["condition"]) == ("precondition_failed",
                                                          "state.reachable == true")
    assert simulator.devices["sim-00004"].extras.gpio[1] == 0


@pytest.mark.parametrize(("params", "named"), [
    ({"target": "remote", "line": 1, "value": 1}, "deviceId: required"),
    ({"target": "local", "line": 1, "value": 1}, "chip: required"),
    (remote("sim-00005", 2000, 1), "line"),
    (remote("sim-00005", 1, 2), "value"),
    (remote("devices/+", 1, 1), "deviceId"),
    ({"target": "local", "chip": "../../dev/sda", "line": 1, "value": 1}, "chip"),
    ({"target": "elsewhere", "deviceId": "sim-00005", "line": 1, "value": 1}, "target"),
])
async def test_bad_parameters_are_dead_letters_naming_the_parameter(
        rig: CapsRig, simulator: DeviceSimulator, params: dict[str, object],
        named: str) -> None:
    with pytest.raises(DeadLetterError, match=named):
        await rig.run("gpio_write", params)
    assert simulator.devices["sim-00005"].extras.gpio == [0] * 32


async def test_a_local_chip_not_allowed_is_refused(rig: CapsRig) -> None:
    with pytest.raises(DeadLetterError, match=r"gpio chip 'gpiochip0' is not allowed "
                                              r"\(allowed: gpiochip250\)"):
        await rig.run("gpio_write", {"target": "local", "chip": "gpiochip0", "line": 3,
                                     "value": 1})


async def test_an_allowed_chip_that_is_absent_is_a_refused_precondition(rig: CapsRig) -> None:
    outcome = await rig.run("gpio_write", {"target": "local", "chip": "gpiochip250",
                                           "line": 3, "value": 1})
    assert (outcome["outcome"], outcome["condition"]) == ("precondition_failed",
                                                          "state.reachable == true")


# -- local mode on a gpio-sim chip ---------------------------------------------------

async def test_local_write_drives_the_line_and_holds_it(
        redis: Redis, mosquitto: MosquittoServer, sim_chip: SimChip) -> None:
    gpio = LocalGpio([sim_chip.chip])
    rig = await caps_rig(redis, broker_of(mosquitto), gpio=gpio)
    try:
        params = {"target": "local", "chip": sim_chip.chip, "line": 3, "value": 1}
        result = await rig.run("gpio_write", params)
        assert (result["value"], sim_chip.output(3)) == (1, 1)
        await rig.run("gpio_write", {**params, "value": 0})
        assert sim_chip.output(3) == 0
        assert await rig.kinds() == ["executed", "executed"]
    finally:
        await rig.close()
        gpio.close()


async def test_a_line_held_by_another_consumer_is_refused(
        redis: Redis, mosquitto: MosquittoServer, sim_chip: SimChip) -> None:
    gpio = LocalGpio([sim_chip.chip])
    rig = await caps_rig(redis, broker_of(mosquitto), gpio=gpio)
    settings = gpiod.LineSettings(direction=Direction.OUTPUT)
    try:
        with gpiod.request_lines(f"/dev/{sim_chip.chip}", consumer="other",
                                 config={5: settings}):
            outcome = await rig.run("gpio_write", {"target": "local", "chip": sim_chip.chip,
                                                   "line": 5, "value": 1})
        assert outcome["outcome"] == "precondition_failed"  # busy: cannot be read or driven
    finally:
        await rig.close()
        gpio.close()


@pytest.mark.slow
async def test_a_gone_gateway_opens_its_own_breaker_only(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    simulator.devices["sim-00006"].ignored_commands.update({"gpio_write"})
    opened = False
    for _ in range(5):
        try:
            await rig.run("gpio_write", remote("sim-00006", 2, 1, timeoutS=0.2))
        except CircuitOpenError:
            opened = True
            break
        except CallFailedError:
            continue  # the retries failed: one more failure for the breaker
    assert opened
    # Another gateway's breaker is its own.
    result = await rig.run("gpio_write", remote("sim-00007", 2, 1))
    assert result["value"] == 1


async def test_a_repeated_write_changes_nothing_the_second_time(
        rig: CapsRig, simulator: DeviceSimulator) -> None:
    first = await rig.run("gpio_write", remote("sim-00008", 9, 1))
    again = await rig.run("gpio_write", remote("sim-00008", 9, 1))
    assert (first["previous"], again["previous"]) == (0, 1)  # the second changed nothing
    assert simulator.devices["sim-00008"].extras.gpio[9] == 1


async def test_a_file_that_is_not_a_gpio_chip_is_refused_by_libgpiod(tmp_path: Path) -> None:
    (tmp_path / "gpiochip9").symlink_to("/dev/null")  # allowed by name, not a chip
    gpio = LocalGpio(["gpiochip9"], dev=tmp_path)
    with pytest.raises(GpioRefusedError, match="gpio gpiochip9 line 1: No such device"):
        await gpio.write("gpiochip9", 1, 1, timeout_s=5)
    with pytest.raises(GpioRefusedError, match="No such device"):
        await gpio.read("gpiochip9", 1, timeout_s=5)
    gpio.close()
