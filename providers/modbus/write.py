"""``modbus_write``: write a value to a holding register (or a run of them) or a coil
of a Modbus TCP slave, with the types the ``modbus-tcp`` source reads. Parameters::

    {"host": "10.0.0.20", "port": 502, "unitId": 1, "address": 40, "type": "float32",
     "value": 21.5, "wordOrder": "little", "byteOrder": "big", "scale": 0.1}
    {"host": "10.0.0.20", "address": 3, "type": "coil", "value": true}
    {"host": "10.0.0.20", "address": 10, "type": "uint16", "value": [1, 2, 3]}

``value`` is the engineering value: with ``scale`` the register holds value /
scale (rounded for integer types). A list writes consecutive values. Numbers go
to holding registers (one register: function 6, more: function 16), bits to
coils (5, or 15 for a list).

The read function reads the same registers back::

    {"reachable": true, "value": 21.5, "raw": [0, 16812], "matches": true}

``matches``: the registers hold exactly what ``value`` encodes to (a float32
read back is compared by its bits, not as a rounded decimal): the
postcondition of the signed definition. ``value`` is what a rollback with
``{"value": "previous"}`` writes back. An unreachable slave reads as
``{"reachable": false, ...}``, so a precondition can refuse the step.

The host comes from the rule's parameters: when the step has an ``allowHosts``
list, a host it does not name is refused before any connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, ResourcePolicy
from framework.core import PermanentSourceError, RefusedTargetError, TransientSourceError
from providers.modbus.reader import EXCEPTION_CODES
from providers.modbus.words import BIT_TYPES, WIDTH, Order, decode, encode

MODBUS_WRITE_ID = "modbus_write"
MODBUS_WRITE_VERSION = "1.0.0"
# One register (or coil) is written by one executor at a time.
MODBUS_WRITE_RESOURCE = ResourcePolicy("modbus:{host}/{address}")
Scalar = bool | int | float
# Exception codes that say "not now" (acknowledge, busy, a gateway's path or
# target): worth a retry, unlike an illegal address or value.
_BUSY_CODES = frozenset({5, 6, 10, 11})


class WriteParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)

    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    address: int = Field(ge=0, le=65535)
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool", "coil"]
    value: Scalar | list[Scalar]
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float | None = Field(None, gt=0)
    timeout_ms: int = Field(3000, gt=0, le=60_000)

    @model_validator(mode="after")
    def _value_fits(self) -> WriteParams:
        bits = self.type in BIT_TYPES
        if any(isinstance(v, bool) != bits for v in self.values):
            raise ValueError(f"value of a {self.type} must be "
                             f"{'true or false' if bits else 'a number'}")
        if bits and self.scale is not None:
            raise ValueError("scale applies to numbers, not bits")
        limit = 1968 if bits else 123  # the protocol's limits on one write (15, 16)
        if not 1 <= self.span <= limit:
            raise ValueError(f"{len(self.values)} x {self.type} spans {self.span}; one write "
                             f"takes 1 to {limit}")
        if self.address + self.span > 65536:
            raise ValueError(f"address {self.address} + {self.span} runs past 65535")
        if not bits:
            self.words()  # every value fits its type
        return self

    @property
    def values(self) -> list[Scalar]:
        return self.value if isinstance(self.value, list) else [self.value]

    @property
    def span(self) -> int:
        return len(self.values) * (1 if self.type in BIT_TYPES else WIDTH[self.type])

    @property
    def target(self) -> str:
        return f"modbus:{self.host}:{self.port}/{self.unit_id}/{self.address}"

    def words(self) -> list[int]:
        """The registers the values encode to."""
        words: list[int] = []
        for value in self.values:
            raw = value / self.scale if self.scale else value
            if not self.type.startswith("float"):
                # 21.5 at scale 0.1 is 214.99999999999997: whole within rounding.
                if abs(raw - round(raw)) > 1e-6:
                    raise ValueError(f"{value} is not a whole {self.type}"
                                     + (f" at scale {self.scale}" if self.scale else ""))
                raw = round(raw)
            words += encode(raw, self.type, word_order=self.word_order,
                            byte_order=self.byte_order)
        return words

    def decoded(self, words: list[int]) -> Any:
        width = WIDTH[self.type]
        values = []
        for i in range(0, len(words), width):
            value = decode(words[i:i + width], self.type, word_order=self.word_order,
                           byte_order=self.byte_order)
            values.append(round(value * self.scale, 9) if self.scale else value)
        return values[0] if not isinstance(self.value, list) else values


def parse_params(params: Mapping[str, Any]) -> WriteParams:
    try:
        return WriteParams.model_validate(dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'params'}: {error['msg']}"
            for error in exc.errors())
        raise ValueError(f"modbus_write: {problems}") from None


async def write_value(params: Mapping[str, Any], context: CallContext) -> Any:
    request = _allowed(parse_params(params), context)
    async with _connected(request) as client:
        if request.type in BIT_TYPES:
            bits = [bool(v) for v in request.values]
            response = await (client.write_coil(request.address, bits[0],
                                                device_id=request.unit_id)
                              if not isinstance(request.value, list) else
                              client.write_coils(request.address, bits,
                                                 device_id=request.unit_id))
        else:
            words = request.words()
            response = await (client.write_register(request.address, words[0],
                                                    device_id=request.unit_id)
                              if len(words) == 1 else
                              client.write_registers(request.address, words,
                                                     device_id=request.unit_id))
    _check(response, request, "write")
    context.logger.info("modbus_written", target=request.target, type=request.type,
                        value=request.value)
    return {"target": request.target, "value": request.value}


async def read_back(params: Mapping[str, Any], context: CallContext) -> Mapping[str, Any]:
    request = _allowed(parse_params(params), context)
    try:
        async with _connected(request) as client:
            if request.type in BIT_TYPES:
                response = await client.read_coils(request.address, count=request.span,
                                                   device_id=request.unit_id)
            else:
                response = await client.read_holding_registers(
                    request.address, count=request.span, device_id=request.unit_id)
    except TransientSourceError as exc:
        context.logger.warning("modbus_unreachable", target=request.target, error=str(exc))
        return {"reachable": False, "value": None, "raw": None, "matches": False}
    _check(response, request, "read")
    if request.type in BIT_TYPES:
        bits = [bool(b) for b in response.bits[:request.span]]
        value: Any = bits if isinstance(request.value, list) else bits[0]
        return {"reachable": True, "value": value, "raw": None,
                "matches": bits == [bool(v) for v in request.values]}
    words = [int(w) for w in response.registers[:request.span]]
    return {"reachable": True, "value": request.decoded(words), "raw": words,
            "matches": words == request.words()}


def _allowed(request: WriteParams, context: CallContext) -> WriteParams:
    if context.hosts is not None:
        reason = context.hosts.refuse_name(request.host, request.port)
        if reason is not None:
            raise RefusedTargetError(f"modbus_write: {reason}")
    return request


@asynccontextmanager
async def _connected(request: WriteParams) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(request.host, port=request.port,
                                  timeout=request.timeout_ms / 1000, retries=0,
                                  reconnect_delay=0)
    try:
        if not await client.connect():
            raise TransientSourceError(f"modbus_write: cannot connect to Modbus slave "
                                       f"{request.host}:{request.port}")
        yield client
    except ModbusException as exc:
        raise TransientSourceError(f"modbus_write: Modbus slave {request.host}:"
                                   f"{request.port}: {exc}") from exc
    finally:
        client.close()


def _check(response: Any, request: WriteParams, what: str) -> None:
    if not response.isError():
        return
    code = response.exception_code
    message = (f"modbus_write: {what} of {request.type} at address {request.address} on "
               f"{request.target} refused: Modbus exception {code} "
               f"({EXCEPTION_CODES.get(code, 'unknown exception code')})")
    if code in _BUSY_CODES:
        raise TransientSourceError(message)
    # The slave is up and says no (illegal address, read-only...): retrying the
    # same write cannot help.
    raise PermanentSourceError(message)


def modbus_write_spec(*, policy: CallPolicy | None = None) -> CapabilitySpec:
    """The ``modbus_write`` capability (addresses in each call's parameters)."""
    return CapabilitySpec(
        id=MODBUS_WRITE_ID,
        version=MODBUS_WRITE_VERSION,
        handler=write_value,
        description="Write a value to Modbus holding registers or coils, read back",
        read_state=read_back,
        policy=policy or CallPolicy(timeout_s=5.0, max_retries=2),
        resource=MODBUS_WRITE_RESOURCE,
    )
