"""Device capabilities that change one setting and read it back:
``device.config_update``, ``security.key_rotation``, ``power.sleep_schedule``,
``alert.threshold_monitor``, and ``diagnosis.self_test`` (which runs a test).

Each is one command on the device channel; its read function reports the setting
under the parameter's own name (``config``, ``keyId``, ``schedule``, ``monitor``),
so a definition's rollback ``{"<name>": "previous"}`` puts back what the device had
before, and an ``*_applied`` flag the postconditions poll."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from framework.consuming import CallContext, CallPolicy, CapabilitySpec
from providers.devices.capabilities.actions import DEVICE_RESOURCE
from providers.devices.capabilities.device_link import DeviceLink, device_scope, state_of
from providers.devices.capabilities.device_params import (
    ConfigUpdateParams,
    KeyRotationParams,
    SelfTestParams,
    SleepScheduleParams,
    ThresholdMonitorParams,
)
from providers.devices.capabilities.params import parse_params

Derive = Callable[[Any, Mapping[str, Any]], dict[str, Any]]
ToCommand = Callable[[Any], dict[str, Any]]
POLICY = CallPolicy(timeout_s=310.0, max_retries=1)


@dataclass(frozen=True)
class Setting:
    capability: str
    version: str
    description: str
    model: type[BaseModel]
    command: str
    to_command: ToCommand
    derive: Derive


def _config_state(call: ConfigUpdateParams, settings: Mapping[str, Any]) -> dict[str, Any]:
    config = settings.get("config") or {}
    applied = (config == call.config if call.replace
               else all(config.get(name) == value for name, value in call.config.items()))
    return {"config": config, "config_applied": applied}


def _key_state(_call: KeyRotationParams, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"keyId": settings.get("key_id"), "previousKeyId": settings.get("previous_key_id"),
            "keyFingerprint": settings.get("key_fingerprint"),
            "self_test_passed": settings.get("self_test_passed")}


def _sleep_state(call: SleepScheduleParams, settings: Mapping[str, Any]) -> dict[str, Any]:
    schedule = settings.get("sleep_schedule")
    return {"schedule": schedule, "schedule_applied": schedule == call.command()["schedule"]}


def _monitor_state(call: ThresholdMonitorParams,
                   settings: Mapping[str, Any]) -> dict[str, Any]:
    monitor = (settings.get("monitors") or {}).get(call.monitor_id)
    return {"monitor": monitor, "monitor_applied": monitor == call.command()["monitor"]}


def _self_test_state(_call: SelfTestParams, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"self_test_passed": settings.get("self_test_passed")}


SETTINGS = (
    Setting("device.config_update", "1.0.0", "Merge (or replace) a device's config over MQTT",
            ConfigUpdateParams, "config_set",
            lambda call: {"config": call.config, "replace": call.replace}, _config_state),
    Setting("security.key_rotation", "1.0.0",
            "Make a device sign with a new key (its fingerprint only is reported)",
            KeyRotationParams, "key_rotate", lambda call: {"keyId": call.key_id}, _key_state),
    Setting("power.sleep_schedule", "1.0.0", "Set or clear a device's daily sleep window",
            SleepScheduleParams, "sleep_schedule", lambda call: call.command(), _sleep_state),
    Setting("alert.threshold_monitor", "1.0.0",
            "Install, change or remove a threshold monitor on a device",
            ThresholdMonitorParams, "threshold_set", lambda call: call.command(),
            _monitor_state),
    Setting("diagnosis.self_test", "1.0.0", "Run a device's self-test",
            SelfTestParams, "self_test", lambda _call: {}, _self_test_state),
)


class SettingCapabilities:
    def __init__(self, link: DeviceLink) -> None:
        self._link = link

    def specs(self) -> list[CapabilitySpec]:
        return [CapabilitySpec(setting.capability, setting.version, self._handler(setting),
                               description=setting.description,
                               read_state=self._reader(setting), resource=DEVICE_RESOURCE,
                               policy=POLICY, breaker_scope=device_scope) for setting in SETTINGS]

    def _reader(self, setting: Setting) -> Callable[..., Any]:
        async def read_state(params: Mapping[str, Any],
                             context: CallContext) -> Mapping[str, Any]:
            call: Any = parse_params(setting.model, setting.capability, params)
            settings = await self._link.settings(call.device_id, context.logger)
            derived = setting.derive(call, settings or {})
            return state_of(call.device_id, settings, derived)
        return read_state

    def _handler(self, setting: Setting) -> Callable[..., Any]:
        async def handle(params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
            call: Any = parse_params(setting.model, setting.capability, params)
            result = await self._link.command(call.device_id, setting.command,
                                              setting.to_command(call), timeout_s=call.timeout_s)
            context.logger.info("device_setting_sent", capability=setting.capability,
                                device_id=call.device_id, command=setting.command)
            return dict(result)
        return handle
