"""A real Modbus TCP slave on loopback for tests, demos and benchmarks: pymodbus's
own server over four tables (coils, discrete inputs, holding and input registers)
whose values the caller sets while it runs.

Faults on demand: ``delay_s`` makes every answer late (a slow slave),
``refuse[address] = code`` answers reads that touch ``address`` with that Modbus
exception code (``refuse_writes``: writes starting there, counted in
``refused_writes``), ``stuck`` acknowledges writes without changing anything (a seized
actuator), and ``stop``/``start`` take the server away and bring it back on the
same port (a restart). ``writes`` lists every write acknowledged: (table, address,
values).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from framework.testing import free_port

TABLES = ("coil", "discrete", "holding", "input")
_READ_CODES = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_WRITE_CODES = {5: "coil", 15: "coil", 6: "holding", 16: "holding"}


class RegisterSimulator:
    def __init__(self, *, size: int = 1000, unit_id: int = 1, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.unit_id = unit_id
        self.size = size
        self.values: dict[str, list[int]] = {table: [0] * size for table in TABLES}
        self.delay_s = 0.0
        self.refuse: dict[int, ExcCodes] = {}
        self.refuse_writes: dict[int, ExcCodes] = {}
        self.refused_writes = 0
        self.stuck = False
        self.writes: list[tuple[str, int, list[int]]] = []
        self.reads = 0
        self._server: ModbusTcpServer | None = None

    def set_words(self, table: str, address: int, words: Sequence[int]) -> None:
        self.values[table][address:address + len(words)] = [int(w) & 0xFFFF for w in words]

    def set_bits(self, table: str, address: int, bits: Sequence[bool]) -> None:
        self.values[table][address:address + len(bits)] = [int(bool(b)) for b in bits]

    async def start(self) -> None:
        bits = SimData(0, count=self.size, values=False, datatype=DataType.BITS)
        words = SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)
        device = SimDevice(self.unit_id, simdata=([bits], [bits], [words], [words]),
                           action=self._on_access)
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]  # untyped upstream
            self._server = None

    async def __aenter__(self) -> RegisterSimulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _on_access(self, function_code: int, start_address: int, address: int,
                         count: int, current_registers: list[int],
                         set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if set_values is not None:
            table = _WRITE_CODES.get(function_code)
            if table is not None and address in self.refuse_writes:
                self.refused_writes += 1
                return self.refuse_writes[address]
            if table is not None:
                written = [int(v) for v in set_values]
                self.writes.append((table, address, written))
                if not self.stuck:
                    self.values[table][address:address + len(written)] = written
            return None
        table = _READ_CODES.get(function_code)
        if table is None:
            return None
        self.reads += 1
        length = count if table in ("holding", "input") else _bit_count(count, address,
                                                                       current_registers)
        refused = [self.refuse[a] for a in range(address, address + length) if a in self.refuse]
        if refused:
            return refused[0]
        if table in ("holding", "input"):
            for i in range(count):
                current_registers[address - start_address + i] = self.values[table][address + i]
        else:
            for offset in range(address - start_address, len(current_registers) * 16):
                source = start_address + offset
                if source >= self.size:
                    break
                _set_bit(current_registers, offset, bool(self.values[table][source]))
        return None


def _bit_count(count: int, address: int, registers: list[int]) -> int:
    # The server hands bit reads over as the registers holding the bits; the bits
    # asked for are at most those.
    return max(1, min(count * 16, len(registers) * 16 - address % 16))


def _set_bit(registers: list[int], offset: int, on: bool) -> None:
    word, bit = divmod(offset, 16)
    if on:
        registers[word] |= 1 << bit
    else:
        registers[word] &= ~(1 << bit)


async def _serve(port: int, size: int) -> None:
    async with RegisterSimulator(size=size, port=port) as device:
        for address in range(size):
            device.values["holding"][address] = address
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    # A slave in a process of its own (benchmarks): PORT [SIZE]; "ready" once it listens.
    import sys

    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
