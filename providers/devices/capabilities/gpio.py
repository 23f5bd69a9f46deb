"""``gpio_write``: drive one GPIO output line, on this host (``target: "local"``,
libgpiod v2 on ``/dev/gpiochipN``, :mod:`.gpio_local`) or on a gateway device
(``target: "remote"``, the ``gpio_write`` command of the device channel).

Its read function reports the line's ``value`` (0/1), read back from the chip or
the device, so the postcondition ``state.value == params.value`` checks what the
line really is and the rollback ``{"value": "previous"}`` drives it back. The
permit is the line itself (``gpio:local:gpiochip0:17``, ``gpio:remote:gw-1:4``):
two executors never drive one line at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, ResourcePolicy
from framework.core import PermanentSourceError, TransientSourceError
from providers.devices.capabilities.device_link import DeviceLink
from providers.devices.capabilities.device_params import GpioWriteParams
from providers.devices.capabilities.gpio_local import GpioRefusedError, LocalGpio
from providers.devices.capabilities.params import parse_params

GPIO_WRITE_ID, GPIO_WRITE_VERSION = "gpio_write", "1.0.0"


@dataclass(frozen=True)
class LineResource(ResourcePolicy):
    """The permit of one line, local or remote (one template cannot name both)."""

    def resource_for(self, params: Mapping[str, Any]) -> str:
        call = parse_params(GpioWriteParams, GPIO_WRITE_ID, params)
        where = call.device_id if call.target == "remote" else call.chip
        return f"gpio:{call.target}:{where}:{call.line}"


def _line_scope(params: Mapping[str, Any]) -> str | None:
    """One breaker per gateway (remote) or chip (local)."""
    where = params.get("deviceId") if params.get("target", "remote") == "remote" \
        else params.get("chip")
    return where if isinstance(where, str) else None


LINE_RESOURCE = LineResource("gpio:{target}:{line}", wait_timeout_s=10.0, ttl_s=10.0)


class GpioCapability:
    def __init__(self, link: DeviceLink, local: LocalGpio) -> None:
        self._link = link
        self._local = local

    def specs(self) -> list[CapabilitySpec]:
        return [CapabilitySpec(
            GPIO_WRITE_ID, GPIO_WRITE_VERSION, self.write,
            description="Drive a GPIO output line, on this host or on a gateway device",
            read_state=self.read_state, resource=LINE_RESOURCE,
            policy=CallPolicy(timeout_s=70.0, max_retries=1), breaker_scope=_line_scope)]

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        call = parse_params(GpioWriteParams, GPIO_WRITE_ID, params)
        if call.target == "local":
            assert call.chip is not None  # checked by the model
            self._local.check_allowed(call.chip)  # a refusal, not an unreadable line
            try:
                value = await self._local.read(call.chip, call.line, timeout_s=call.timeout_s)
            except GpioRefusedError as exc:
                context.logger.warning("gpio_unreadable", chip=call.chip, line=call.line,
                                       error=str(exc))
                return {"target": "local", "reachable": False, "value": None}
            return {"target": "local", "reachable": True, "value": value}
        assert call.device_id is not None
        channel = await self._link.actions.channel()
        try:
            answer = await channel.request(call.device_id, "gpio_read", {"line": call.line},
                                           timeout_s=self._link.state_timeout_s)
        except (TransientSourceError, PermanentSourceError) as exc:  # not read back
            context.logger.warning("gpio_unreadable", device_id=call.device_id,
                                   line=call.line, error=str(exc))
            return {"target": "remote", "reachable": False, "value": None}
        return {"target": "remote", "reachable": True, "value": answer.get("value")}

    async def write(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        call = parse_params(GpioWriteParams, GPIO_WRITE_ID, params)
        before: int | None
        if call.target == "local":
            assert call.chip is not None
            before = await self._local.write(call.chip, call.line, call.value,
                                             timeout_s=call.timeout_s)
            where = call.chip
        else:
            assert call.device_id is not None
            result = await self._link.command(call.device_id, "gpio_write",
                                              {"line": call.line, "value": call.value},
                                              timeout_s=call.timeout_s)
            before, where = result.get("previous"), call.device_id
        context.logger.info("gpio_written", target=call.target, where=where, line=call.line,
                            value=call.value, previous=before)
        return {"target": call.target, "line": call.line, "value": call.value,
                "previous": before}
