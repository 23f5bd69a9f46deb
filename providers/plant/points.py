"""Reading and writing points of one device, over Modbus TCP (pymodbus) or OPC-UA
(asyncua), behind one small interface so that pumps and zones do not care which.

``session(device, what)`` connects, yields a :class:`PointIO` and always
disconnects; the whole session has the device's ``timeoutMs`` as its total
deadline. Errors name the device, the point and what was done:
:class:`TransientSourceError` for what a retry may cure (no connection, a
timeout, a busy device), :class:`PermanentSourceError` for a refusal (an
illegal address, an unknown node, a value the node does not take).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from framework.core import PermanentSourceError, TransientSourceError
from providers.modbus.words import WIDTH, decode, encode
from providers.plant.settings import Device, Point

Value = bool | float
# Modbus exception codes that say "not now": acknowledge, busy, gateway path or target.
_BUSY_CODES = frozenset({5, 6, 10, 11})


class PointIO(Protocol):
    async def read(self, point: Point) -> Value: ...

    async def write(self, point: Point, value: Value) -> None: ...


@asynccontextmanager
async def session(device: Device, what: str) -> AsyncIterator[PointIO]:
    """A connected device for ``what`` (``pump_control``: names the caller in errors)."""
    where = f"{what}: {device.protocol} device {device.hostname}:{device.tcp_port}"
    try:
        async with asyncio.timeout(device.timeout_s):
            if device.protocol == "modbus":
                async with _modbus(device, where) as io:
                    yield io
            else:
                async with _opcua(device, where) as io:
                    yield io
    except TimeoutError:
        raise TransientSourceError(f"{where}: no answer within {device.timeout_ms} ms "
                                   "(timeoutMs)") from None


# -- Modbus TCP ----------------------------------------------------------------------------


@asynccontextmanager
async def _modbus(device: Device, where: str) -> AsyncIterator[PointIO]:
    client = AsyncModbusTcpClient(str(device.host), port=device.port,
                                  timeout=device.timeout_s, retries=0, reconnect_delay=0)
    try:
        if not await client.connect():
            raise TransientSourceError(f"{where}: cannot connect")
        yield _ModbusIO(client, device.unit_id, where)
    except ModbusException as exc:
        raise TransientSourceError(f"{where}: {exc}") from exc
    finally:
        client.close()


class _ModbusIO:
    def __init__(self, client: AsyncModbusTcpClient, unit_id: int, where: str) -> None:
        self._client = client
        self._unit = unit_id
        self._where = where

    async def read(self, point: Point) -> Value:
        address, unit = point.address, self._unit
        if point.is_bit:
            read = (self._client.read_coils if point.table == "coil"
                    else self._client.read_discrete_inputs)
            response = await read(address, count=1, device_id=unit)
            self._check(response, point, "read")
            return bool(response.bits[0])
        read_words = (self._client.read_holding_registers if point.table == "holding"
                      else self._client.read_input_registers)
        response = await read_words(address, count=WIDTH[point.type], device_id=unit)
        self._check(response, point, "read")
        raw = decode([int(w) for w in response.registers[:WIDTH[point.type]]], point.type)
        return round(raw * point.scale, 9) if point.scale else float(raw)

    async def write(self, point: Point, value: Value) -> None:
        if point.is_bit:
            response = await self._client.write_coil(point.address, bool(value),
                                                     device_id=self._unit)
        else:
            response = await self._client.write_registers(
                point.address, _words(point, float(value)), device_id=self._unit)
        self._check(response, point, f"write {value}")

    def _check(self, response: Any, point: Point, what: str) -> None:
        if not response.isError():
            return
        code = response.exception_code
        message = f"{self._where}: {what} of {point.label} refused: Modbus exception {code}"
        if code in _BUSY_CODES:
            raise TransientSourceError(message)
        raise PermanentSourceError(message)


def _words(point: Point, value: float) -> list[int]:
    """The registers ``value`` encodes to; ValueError if it does not fit the type."""
    raw = value / point.scale if point.scale else value
    if not point.type.startswith("float"):
        raw = round(raw)
    return encode(raw, point.type)


# -- OPC-UA --------------------------------------------------------------------------------


@asynccontextmanager
async def _opcua(device: Device, where: str) -> AsyncIterator[PointIO]:
    client = Client(str(device.endpoint), timeout=device.timeout_s)
    try:
        await client.connect()
    except (TimeoutError, OSError, UaError) as exc:
        raise TransientSourceError(f"{where}: cannot connect: {exc}") from exc
    try:
        yield _OpcuaIO(client, where)
    except OSError as exc:
        raise TransientSourceError(f"{where}: {exc}") from exc
    finally:
        # The server may be gone; the socket is closed either way.
        with contextlib.suppress(TimeoutError, OSError, UaError):
            await client.disconnect()


class _OpcuaIO:
    def __init__(self, client: Client, where: str) -> None:
        self._client = client
        self._where = where

    async def read(self, point: Point) -> Value:
        node = self._node(point)
        try:
            value = await node.read_value()
        except UaStatusCodeError as exc:
            raise self._refused(point, "read", exc) from exc
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return round(value * point.scale, 9) if point.scale else float(value)
        raise PermanentSourceError(f"{self._where}: node {point.node} holds "
                                   f"{type(value).__name__}, not a number or a boolean")

    async def write(self, point: Point, value: Value) -> None:
        node = self._node(point)
        try:
            # The node's own variant type: a Float node takes a Float, not a Double.
            variant = await node.read_data_type_as_variant_type()
            raw: Any = value
            if not isinstance(value, bool):
                raw = value / point.scale if point.scale else value
                if variant not in (ua.VariantType.Float, ua.VariantType.Double):
                    raw = round(raw)
            await node.write_value(ua.DataValue(ua.Variant(raw, variant)))
        except UaStatusCodeError as exc:
            raise self._refused(point, f"write {value}", exc) from exc

    def _node(self, point: Point) -> Any:
        try:
            return self._client.get_node(str(point.node))
        except (ValueError, UaError) as exc:
            raise PermanentSourceError(f"{self._where}: node id {point.node!r} is "
                                       f"invalid: {exc}") from exc

    def _refused(self, point: Point, what: str, exc: UaStatusCodeError) -> Exception:
        return PermanentSourceError(f"{self._where}: {what} of node {point.node} refused: "
                                    f"{type(exc).__name__} ({exc})")
