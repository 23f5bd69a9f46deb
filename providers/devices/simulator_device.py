"""One simulated device: its firmware, self-test and config, and how it answers
each command. Pure state (no I/O): :mod:`providers.devices.simulator` runs many of
them over one MQTT connection.

Faults a test or a demo can inject: ``go_silent(seconds)`` (no heartbeat, no
answer), ``fail_self_test`` (every self-test after it fails), ``brick_on`` (a
firmware version that bricks the device when installed: silent for good),
``ignored_commands`` (received, never answered: a hung handler).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from providers.devices.simulator_extras import EXTRA_COMMANDS, DeviceExtras, ExtraRefused

# Answers kept per device, by correlation id: a QoS 1 command delivered twice is
# answered twice with the same result, and never applied twice.
_REMEMBERED_ANSWERS = 32
Answer = dict[str, Any]


class CommandRefused(Exception):
    """The command cannot be done: the device answers ``ok: false`` with ``code``."""

    def __init__(self, message: str, code: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class SimulatedDevice:
    device_id: str
    firmware_version: str = "1.0.0"
    previous_version: str | None = None
    self_test_passed: bool = True
    fail_self_test: bool = False
    brick_on: set[str] = field(default_factory=set)
    bricked: bool = False
    silent_until_s: float = 0.0
    boot_count: int = 1
    firmware_updates: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    # Commands received and never answered (a firmware bug, a hung handler).
    ignored_commands: set[str] = field(default_factory=set)
    # Commands answered ok without taking effect (a device that lies).
    no_effect: set[str] = field(default_factory=set)
    extras: DeviceExtras = field(default_factory=DeviceExtras)
    _answers: OrderedDict[str, Answer | None] = field(default_factory=OrderedDict, repr=False)

    def is_silent(self, now_s: float) -> bool:
        return self.bricked or now_s < self.silent_until_s

    def go_silent(self, now_s: float, seconds: float) -> None:
        self.silent_until_s = max(self.silent_until_s, now_s + seconds)

    def state(self) -> dict[str, Any]:
        return {"deviceId": self.device_id, "firmware_version": self.firmware_version,
                "previous_version": self.previous_version,
                "self_test_passed": self.self_test_passed, "boot_count": self.boot_count,
                "firmware_updates": self.firmware_updates, "config": dict(self.config)}

    def answer(self, correlation: str, command: str, params: Mapping[str, Any],
               now_s: float) -> Answer | None:
        """The response body for one command, or None when the device says nothing."""
        if correlation in self._answers:
            return self._answers[correlation]
        if self.is_silent(now_s):
            return None  # not remembered: it may answer the redelivery once awake
        answer = self._run(correlation, command, params, now_s)
        self._answers[correlation] = answer
        while len(self._answers) > _REMEMBERED_ANSWERS:
            self._answers.popitem(last=False)
        return answer

    def _run(self, correlation: str, command: str, params: Mapping[str, Any],
             now_s: float) -> Answer | None:
        if command in self.ignored_commands:
            return None
        handler = _COMMANDS.get(command)
        if handler is None:
            return {"id": correlation, "ok": False, "code": "unknown_command",
                    "error": f"unknown command {command[:64]!r}"}
        if command in self.no_effect:
            return {"id": correlation, "ok": True, "result": {}}
        try:
            result = handler(self, params, now_s)
        except (CommandRefused, ExtraRefused) as refused:
            return {"id": correlation, "ok": False, "code": refused.code, "error": str(refused)}
        if self.bricked:
            return None  # the new firmware never boots
        return {"id": correlation, "ok": True, "result": result}

    # -- commands ------------------------------------------------------------------

    def _get_state(self, _params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        return self.state()

    def _firmware_update(self, params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        version = _text(params, "version")
        if version == "previous":
            if self.previous_version is None:
                raise CommandRefused("no previous firmware to roll back to", "no_previous")
            self.firmware_version, self.previous_version = (self.previous_version,
                                                            self.firmware_version)
        else:
            self.previous_version, self.firmware_version = self.firmware_version, version
        self.firmware_updates += 1
        self.boot_count += 1
        self.bricked = self.firmware_version in self.brick_on
        self.self_test_passed = not self.fail_self_test
        return self.state()

    def _reboot(self, _params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        self.boot_count += 1
        return {"boot_count": self.boot_count}

    def _config_update(self, params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        config = params.get("config")
        if not isinstance(config, dict):
            raise CommandRefused("params.config: expected an object", "bad_params")
        self.config.update(config)
        return {"config": dict(self.config)}

    def _self_test(self, _params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        self.self_test_passed = not self.fail_self_test
        return {"passed": self.self_test_passed, "self_test_passed": self.self_test_passed}

    def _sim_go_silent(self, params: Mapping[str, Any], now_s: float) -> dict[str, Any]:
        seconds = params.get("seconds")
        if not isinstance(seconds, int | float) or seconds <= 0:
            raise CommandRefused("params.seconds: expected a positive number", "bad_params")
        self.go_silent(now_s, float(seconds))
        return {"silent_until_s": self.silent_until_s}

    def _sim_fail_self_test(self, params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        self.fail_self_test = bool(params.get("fail", True))
        return {"fail_self_test": self.fail_self_test}

    def _sim_brick_on(self, params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        self.brick_on.add(_text(params, "version"))
        return {"brick_on": sorted(self.brick_on)}


    def _sim_ignore(self, params: Mapping[str, Any], _now_s: float) -> dict[str, Any]:
        self.ignored_commands.add(_text(params, "command"))
        return {"ignored_commands": sorted(self.ignored_commands)}


def _text(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value or len(value) > 64:
        raise CommandRefused(f"params.{name}: expected a string of 1-64 characters",
                             "bad_params")
    return value


_COMMANDS: dict[str, Callable[[SimulatedDevice, Mapping[str, Any], float], dict[str, Any]]] = {
    "get_state": SimulatedDevice._get_state,
    "firmware_update": SimulatedDevice._firmware_update,
    "reboot": SimulatedDevice._reboot,
    "config_update": SimulatedDevice._config_update,
    "self_test": SimulatedDevice._self_test,
    "sim.go_silent": SimulatedDevice._sim_go_silent,
    "sim.fail_self_test": SimulatedDevice._sim_fail_self_test,
    "sim.brick_on": SimulatedDevice._sim_brick_on,
    "sim.ignore": SimulatedDevice._sim_ignore,
}
_COMMANDS.update(EXTRA_COMMANDS)
COMMANDS = tuple(_COMMANDS)
