"""A real Modbus TCP device on loopback for tests and demos: pymodbus's own server
with a block of coils (one valve per coil).

``stuck=True`` makes a device that acknowledges writes but never moves (a seized
valve): a postcondition reading the coil back never becomes true.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from framework.testing import free_port
from providers.modbus.valve import ValveAddress

_WRITE_COIL_CODES = (5, 15)


class ValveSimulator:
    def __init__(self, *, coils: int = 16, unit_id: int = 1,
                 initial: Mapping[int, bool] | None = None, stuck: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.unit_id = unit_id
        self.stuck = stuck
        # (coil, value) of every write the device acknowledged, moved or not.
        self.writes: list[tuple[int, bool]] = []
        values = [bool((initial or {}).get(n, False)) for n in range(coils)]
        device = SimDevice(
            unit_id,
            simdata=([SimData(0, values=values, datatype=DataType.BITS)],
                     [SimData(0, values=False, datatype=DataType.BITS)],
                     [SimData(0, values=0, datatype=DataType.REGISTERS)],
                     [SimData(0, values=0, datatype=DataType.REGISTERS)]),
            action=self._on_access,
        )
        self._server = ModbusTcpServer(device, address=(self.host, self.port))

    def address(self, coil: int) -> ValveAddress:
        return ValveAddress(self.host, self.port, self.unit_id, coil, timeout_s=2.0)

    async def coil(self, coil: int) -> bool:
        """Read one coil as any Modbus client would."""
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=2, retries=0)
        try:
            await client.connect()
            response = await client.read_coils(coil, count=1, device_id=self.unit_id)
            return bool(response.bits[0])
        finally:
            client.close()

    async def __aenter__(self) -> ValveSimulator:
        await self._server.serve_forever(background=True)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it untyped

    async def _on_access(self, function_code: int, start_address: int, address: int,
                         count: int, current_registers: list[int],
                         set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if set_values is None or function_code not in _WRITE_COIL_CODES:
            return None
        self.writes.extend((address + i, bool(v)) for i, v in enumerate(set_values))
        if self.stuck:
            for i in range(len(set_values)):
                set_values[i] = _bit(current_registers, address + i - start_address)
        return None


def _bit(registers: Sequence[int], offset: int) -> bool:
    return bool((registers[offset // 16] >> (offset % 16)) & 1)
