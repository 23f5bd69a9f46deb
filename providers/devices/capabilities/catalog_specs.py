"""The device capabilities beyond firmware and reboot, built over the one device
channel of :class:`DeviceActions`: settings, readings, upload and ``gpio_write``.

Settings read at start-up from ``env``: ``DEVICE_TELEMETRY_STREAMS`` (the streams
``device.telemetry_collect`` may read, comma-separated; default
``raw-input-signals``) and ``GPIO_ALLOWED_CHIPS`` (the chips ``gpio_write`` may drive
on this host, e.g. ``gpiochip0``; default none: local writes are refused)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from framework.consuming import CapabilitySpec
from providers.devices.capabilities.actions import DeviceActions
from providers.devices.capabilities.device_link import STATE_TIMEOUT_S, DeviceLink
from providers.devices.capabilities.gpio import GpioCapability
from providers.devices.capabilities.gpio_local import LocalGpio
from providers.devices.capabilities.readings import ReadingCapabilities
from providers.devices.capabilities.settings import SettingCapabilities
from providers.devices.capabilities.upload import UploadCapability
from providers.http.guarded_client import GuardedClient

DEFAULT_TELEMETRY_STREAMS = ("raw-input-signals",)


@dataclass(frozen=True)
class DeviceCapabilityDeps:
    """``client``: the guarded HTTP client uploads go through (shared, closed by its
    owner); a line ``gpio_write`` drives stays held by ``gpio`` for the process's life
    (libgpiod leaves a released line's value undefined)."""

    actions: DeviceActions
    client: GuardedClient
    gpio: LocalGpio = field(default_factory=lambda: LocalGpio(()))
    telemetry_streams: tuple[str, ...] = DEFAULT_TELEMETRY_STREAMS
    state_timeout_s: float = STATE_TIMEOUT_S


def device_capability_specs(deps: DeviceCapabilityDeps) -> list[CapabilitySpec]:
    link = DeviceLink(deps.actions, state_timeout_s=deps.state_timeout_s)
    return [*SettingCapabilities(link).specs(),
            *ReadingCapabilities(link, streams=deps.telemetry_streams).specs(),
            *UploadCapability(link, deps.client).specs(),
            *GpioCapability(link, deps.gpio).specs()]


def device_capability_deps_from_env(actions: DeviceActions, client: GuardedClient,
                                    env: Mapping[str, str]) -> DeviceCapabilityDeps:
    streams = _names(env.get("DEVICE_TELEMETRY_STREAMS")) or DEFAULT_TELEMETRY_STREAMS
    return DeviceCapabilityDeps(actions, client, gpio=LocalGpio(
        _names(env.get("GPIO_ALLOWED_CHIPS"))), telemetry_streams=streams)


def _names(raw: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (raw or "").split(",") if name.strip())
