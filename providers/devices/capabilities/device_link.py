"""What the device capabilities beyond firmware and reboot share: the device's
``get_settings`` as their read function (``state.reachable`` false when the device
does not answer in time), and one command sent through the shared channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.core import Logger, TransientSourceError
from providers.devices.capabilities.actions import DeviceActions

STATE_TIMEOUT_S = 5.0


class DeviceLink:
    """``actions``: the firmware/reboot capabilities, whose one lazily connected
    channel every device capability shares."""

    def __init__(self, actions: DeviceActions, *, state_timeout_s: float = STATE_TIMEOUT_S
                 ) -> None:
        self.actions = actions
        self.state_timeout_s = state_timeout_s

    async def settings(self, device_id: str, logger: Logger) -> Mapping[str, Any] | None:
        """The device's ``get_settings``, or None when it does not answer in time."""
        channel = await self.actions.channel()
        try:
            return await channel.request(device_id, "get_settings", {},
                                         timeout_s=self.state_timeout_s)
        except TransientSourceError as exc:
            logger.warning("device_unreachable", device_id=device_id, error=str(exc))
            return None

    async def command(self, device_id: str, command: str, params: Mapping[str, Any], *,
                      timeout_s: float) -> Mapping[str, Any]:
        channel = await self.actions.channel()
        return await channel.request(device_id, command, params, timeout_s=timeout_s)


def state_of(device_id: str, settings: Mapping[str, Any] | None,
             derived: Mapping[str, Any]) -> dict[str, Any]:
    """The read function's answer: what the conditions and ``"previous"`` read."""
    if settings is None:
        return {"deviceId": device_id, "reachable": False,
                **{name: None for name in derived}}
    return {"deviceId": device_id, "reachable": True, **derived}


def device_scope(params: Mapping[str, Any]) -> str | None:
    """The breaker of a call is its device's: one gone device does not open the
    breaker of every other."""
    device_id = params.get("deviceId")
    return device_id if isinstance(device_id, str) else None
