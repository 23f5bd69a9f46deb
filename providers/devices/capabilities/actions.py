"""``device.firmware_update`` and ``device.reboot``: device capabilities over the
MQTT command channel, for the seven-step executor (docs/execution.md).

Both read the device's state (``get_state``) as their read function, so
preconditions and postconditions see ``state.reachable``, ``state.version``
(= ``state.firmware_version``), ``state.previous_version``,
``state.self_test_passed`` and ``state.boot_count``. A device that does not answer
reads as ``{"reachable": false, ...: null}``.

``device.firmware_update`` never installs what it cannot trust: the manifest's
Ed25519 signature (firmware keys, not catalog keys) is checked before the command
is sent. It is idempotent: a device already on the version asked is not updated
again (a redelivered step, a resumed rollout). One channel (one MQTT connection)
serves every call; it connects on the first call (``DEVICE_BROKER_URL``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from packaging.version import InvalidVersion, Version

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, ResourcePolicy
from framework.core import Logger, TransientSourceError, get_logger
from framework.trust import TrustStore
from providers.devices.capabilities.manifest import firmware_trust_from_env, verify_manifest
from providers.devices.capabilities.params import (
    FirmwareUpdateParams,
    RebootParams,
    parse_params,
)
from providers.devices.channel import ChannelLimits, DeviceChannel, DeviceRefusedError
from providers.devices.channel_broker import DeviceBroker

FIRMWARE_UPDATE_ID, FIRMWARE_UPDATE_VERSION = "device.firmware_update", "1.2.0"
REBOOT_ID, REBOOT_VERSION = "device.reboot", "1.0.0"
# One executor drives a device at a time (a reboot during an update would brick it).
# The permit is renewed while the call runs; a crashed holder's expires within ttl_s,
# well inside a waiter's wait: a resumed rollout gets the devices its driver held.
DEVICE_RESOURCE = ResourcePolicy("device:{deviceId}", wait_timeout_s=30.0, ttl_s=10.0)
STATE_TIMEOUT_S = 5.0
BrokerSource = Callable[[], DeviceBroker]


class DeviceActions:
    """The device capabilities over one lazily connected :class:`DeviceChannel`.
    ``broker``: where the devices' broker is (read at the first call);
    ``trust``: the keys that may sign firmware. The owner calls :meth:`aclose`."""

    def __init__(self, broker: BrokerSource, trust: Callable[[], TrustStore], *,
                 limits: ChannelLimits | None = None, logger: Logger | None = None,
                 state_timeout_s: float = STATE_TIMEOUT_S) -> None:
        self._broker = broker
        self._state_timeout_s = state_timeout_s
        self._trust = trust
        self._limits = limits or ChannelLimits()
        self._log = logger or get_logger(component="devices")
        self._channel: DeviceChannel | None = None
        self._connecting = asyncio.Lock()

    def specs(self) -> list[CapabilitySpec]:
        return [
            CapabilitySpec(
                FIRMWARE_UPDATE_ID, FIRMWARE_UPDATE_VERSION, self.update_firmware,
                description="Install a signed firmware on one device over MQTT",
                read_state=self.read_state, resource=DEVICE_RESOURCE,
                policy=CallPolicy(timeout_s=310.0, max_retries=1)),
            CapabilitySpec(
                REBOOT_ID, REBOOT_VERSION, self.reboot,
                description="Reboot one device over MQTT", read_state=self.read_state,
                resource=DEVICE_RESOURCE, policy=CallPolicy(timeout_s=310.0, max_retries=1)),
        ]

    async def channel(self) -> DeviceChannel:
        async with self._connecting:
            if self._channel is None:
                channel = DeviceChannel(self._broker(), logger=self._log, limits=self._limits)
                await channel.start()
                self._channel = channel
            return self._channel

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.stop()

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        device_id = parse_params(RebootParams, "device", _only_id(params)).device_id
        state = await self.probe(device_id, context.logger)
        if state is None:
            return {"deviceId": device_id, "reachable": False, "version": None,
                    "firmware_version": None, "previous_version": None,
                    "self_test_passed": None, "boot_count": None}
        return {**state, "deviceId": device_id, "reachable": True,
                "version": state.get("firmware_version")}

    async def probe(self, device_id: str, logger: Logger | None = None
                    ) -> Mapping[str, Any] | None:
        """The device's ``get_state``, or None when it does not answer in time."""
        channel = await self.channel()
        try:
            return await channel.request(device_id, "get_state", {},
                                         timeout_s=self._state_timeout_s)
        except TransientSourceError as exc:
            (logger or self._log).warning("device_unreachable", device_id=device_id,
                                          error=str(exc))
            return None

    async def update_firmware(self, params: Mapping[str, Any],
                              context: CallContext) -> dict[str, Any]:
        call = parse_params(FirmwareUpdateParams, FIRMWARE_UPDATE_ID, params)
        channel = await self.channel()
        state = await channel.request(call.device_id, "get_state", {}, timeout_s=call.timeout_s)
        if state.get("firmware_version") == call.version:
            context.logger.info("firmware_already_installed", device_id=call.device_id,
                                version=call.version)
            return {**state, "updated": False}
        if call.manifest is None or call.manifest.version != call.version:
            return await self._roll_back(channel, call, state, context)
        verify_manifest(call.manifest, call.version, self._trust(), device_id=call.device_id,
                        now_s=context.clock.time())
        command = {"version": call.version, **call.manifest.to_json()}
        command.pop("signature")
        result = await channel.request(call.device_id, "firmware_update", command,
                                       timeout_s=call.timeout_s)
        context.logger.info("firmware_update_sent", device_id=call.device_id,
                            version=call.version, previous=state.get("firmware_version"))
        return {**result, "updated": True}

    async def _roll_back(self, channel: DeviceChannel, call: FirmwareUpdateParams,
                         state: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        """No manifest for this version: only the one the device still holds (its
        previous slot) can be installed."""
        current = state.get("firmware_version")
        if state.get("previous_version") != call.version:
            raise DeviceRefusedError(
                f"device {call.device_id}: no signed manifest for version {call.version} "
                f"(the device holds {current} and {state.get('previous_version')})",
                code="unsigned_firmware")
        if _is_newer(call.version, current):
            # Only back without a manifest: a failed rollback's own revert would
            # otherwise put the firmware just rolled back from on again.
            raise DeviceRefusedError(
                f"device {call.device_id}: {call.version} is newer than the installed "
                f"{current}: going forward needs a signed manifest", code="unsigned_firmware")
        result = await channel.request(call.device_id, "firmware_update",
                                       {"version": "previous"}, timeout_s=call.timeout_s)
        context.logger.warning("firmware_rolled_back", device_id=call.device_id,
                               version=call.version, rolled_back_from=state.get("firmware_version"))
        return {**result, "updated": True, "rolledBack": True}

    async def reboot(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        call = parse_params(RebootParams, REBOOT_ID, params)
        channel = await self.channel()
        result = await channel.request(call.device_id, "reboot", {}, timeout_s=call.timeout_s)
        context.logger.info("device_rebooted", device_id=call.device_id)
        return dict(result)


def _is_newer(version: str, than: object) -> bool:
    """``version`` > ``than`` when both parse as versions (else unknown: False)."""
    try:
        return Version(version) > Version(str(than))
    except InvalidVersion:
        return False


def _only_id(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"deviceId": params.get("deviceId")}


def device_actions_from_env(environ: Mapping[str, str]) -> DeviceActions:
    """The broker from ``DEVICE_BROKER_URL`` (``DEVICE_BROKER_USERNAME`` /
    ``DEVICE_BROKER_PASSWORD``) and the firmware keys from ``FIRMWARE_TRUSTED_KEYS`` /
    ``FIRMWARE_TRUSTED_KEYS_JSON``, both read at the first call: a process that never
    calls a device capability needs neither."""
    env = dict(environ)

    def broker() -> DeviceBroker:
        url = env.get("DEVICE_BROKER_URL")
        if not url:
            raise ValueError("device capabilities: no device broker is configured "
                             "(DEVICE_BROKER_URL)")
        return DeviceBroker(broker=url, username=env.get("DEVICE_BROKER_USERNAME") or None,
                            password=env.get("DEVICE_BROKER_PASSWORD") or None)

    return DeviceActions(broker, lambda: firmware_trust_from_env(env))
