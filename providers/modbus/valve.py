"""``valve_control``: open or close a valve driven by one Modbus coil.

The coil is ON for an open valve, OFF for a closed one. Parameters::

    {"valveId": "V-01", "action": "CLOSE"}               # address from the valve map
    {"valveId": "V-01", "action": "OPEN", "host": "10.0.0.20", "port": 502,
     "unitId": 1, "coil": 3}                              # or given by the rule

The read function (``CapabilitySpec.read_state``) reads the coil back::

    {"valveId": "V-01", "reachable": true, "closed": true, "position": "CLOSED",
     "action": "CLOSE"}

``action`` is the command that restores the current position, so a rollback
with ``{"action": "previous"}`` puts the valve back where it was; an
unreachable device reads as ``{"reachable": false, "closed": null, ...}`` so a
precondition ``state.reachable == true`` can refuse the step. When the call
holds a resource permit, the fencing token is checked against the highest one
this coil accepted (:class:`framework.trust.arbiter.FencingGuard`) before writing:
a holder whose permit expired cannot move the valve behind the new holder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from framework.consuming import (
    CallContext,
    CallPolicy,
    CapabilitySpec,
    ResourcePolicy,
    is_retryable,
)
from framework.core import (
    PermanentSourceError,
    StaleFencingTokenError,
    TransientSourceError,
    outside_deadline,
)
from framework.trust import FencingGuard

VALVE_CONTROL_ID = "valve_control"
VALVE_CONTROL_VERSION = "1.1.0"
# One valve is driven by one executor at a time.
VALVE_RESOURCE = ResourcePolicy("valve:{valveId}")
_COMMANDS = {"OPEN": True, "CLOSE": False}


@dataclass(frozen=True)
class ValveAddress:
    host: str
    port: int = 502
    unit_id: int = 1
    coil: int = 0
    timeout_s: float = 3.0

    @property
    def target(self) -> str:
        """The fencing target: one coil of one device."""
        return f"modbus:{self.host}:{self.port}/{self.unit_id}/{self.coil}"


class _Valves:
    """Where each valve is: the configured map, overridden by the call's parameters."""

    def __init__(self, valves: Mapping[str, ValveAddress]) -> None:
        self._valves = dict(valves)

    def address(self, params: Mapping[str, Any]) -> ValveAddress:
        valve_id = params.get("valveId")
        if not isinstance(valve_id, str) or not valve_id:
            raise ValueError("valve_control: parameter valveId (a string) is required")
        known = self._valves.get(valve_id)
        host = params.get("host", known.host if known else None)
        if host is None:
            raise ValueError(f"valve_control: valve {valve_id} is not configured and the "
                             "call gives no host (known: "
                             f"{', '.join(sorted(self._valves)) or 'none'})")
        defaults = known or ValveAddress(host=str(host))
        return ValveAddress(
            host=str(host),
            port=int(params.get("port", defaults.port)),
            unit_id=int(params.get("unitId", defaults.unit_id)),
            coil=int(params.get("coil", defaults.coil)),
            timeout_s=defaults.timeout_s,
        )

    async def set_position(self, params: Mapping[str, Any], context: CallContext) -> Any:
        address = self.address(params)
        action = str(params.get("action", "")).upper()
        if action not in _COMMANDS:
            raise ValueError(f"valve_control: action must be OPEN or CLOSE, "
                             f"not {params.get('action')!r}")
        if context.fencing_token is not None:
            # Our Redis, not the device: a Redis stall is not the device's time.
            with outside_deadline():
                await FencingGuard(context.redis).accept(address.target, context.fencing_token)
        async with _connected(address) as client:
            response = await client.write_coil(address.coil, _COMMANDS[action],
                                               device_id=address.unit_id)
        _check(response, address, "write coil")
        context.logger.info("valve_commanded", valve=params["valveId"], action=action,
                            target=address.target, fencing_token=context.fencing_token)
        return {"valveId": params["valveId"], "action": action,
                "fencingToken": context.fencing_token}

    async def read_position(self, params: Mapping[str, Any],
                            context: CallContext) -> Mapping[str, Any]:
        address = self.address(params)
        try:
            async with _connected(address) as client:
                response = await client.read_coils(address.coil, count=1,
                                                   device_id=address.unit_id)
        except TransientSourceError as exc:
            context.logger.warning("valve_unreachable", target=address.target, error=str(exc))
            return {"valveId": params["valveId"], "reachable": False, "closed": None,
                    "position": None, "action": None}
        _check(response, address, "read coil")
        closed = not response.bits[0]
        return {"valveId": params["valveId"], "reachable": True, "closed": closed,
                "position": "CLOSED" if closed else "OPEN",
                "action": "CLOSE" if closed else "OPEN"}


@asynccontextmanager
async def _connected(address: ValveAddress) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(address.host, port=address.port,
                                  timeout=address.timeout_s, retries=0)
    try:
        if not await client.connect():
            raise TransientSourceError(f"valve_control: cannot connect to Modbus device "
                                       f"{address.host}:{address.port}")
        yield client
    except ModbusException as exc:
        raise TransientSourceError(f"valve_control: Modbus device {address.host}:"
                                   f"{address.port}: {exc}") from exc
    finally:
        client.close()


def _check(response: Any, address: ValveAddress, what: str) -> None:
    if response.isError():
        # An exception response (illegal address...): the device is up, the call is wrong.
        raise PermanentSourceError(f"valve_control: {what} {address.coil} on "
                                   f"{address.target} refused: {response}")


def _retryable(exc: BaseException) -> bool:
    # A stale token stays stale: the valve belongs to a newer permit holder now.
    return is_retryable(exc) and not isinstance(exc, StaleFencingTokenError)


def valve_control_spec(valves: Mapping[str, ValveAddress] | None = None, *,
                       policy: CallPolicy | None = None) -> CapabilitySpec:
    """The ``valve_control`` capability over the given valve map (may be empty:
    then every call gives host, port, unitId and coil)."""
    driver = _Valves(valves or {})
    return CapabilitySpec(
        id=VALVE_CONTROL_ID,
        version=VALVE_CONTROL_VERSION,
        handler=driver.set_position,
        description="Open or close a valve driven by a Modbus coil (ON = open)",
        read_state=driver.read_position,
        policy=policy or CallPolicy(timeout_s=5.0, max_retries=2, retryable=_retryable),
        resource=VALVE_RESOURCE,
    )
