"""Reading one Modbus TCP slave: one connection kept between polls, every read of
a poll within one deadline, reconnection with backoff.

A read never raises for the slave's sake: whatever goes wrong (refused
connection, a silent or slow device, an exception response) becomes a
:class:`Reading` with an ``error`` naming the slave and the register, so the
source publishes the other slaves' values and the others of this slave. After
a connection failure or a timeout the connection is dropped (a late answer
would be taken for the next request's) and not retried before the backoff
(``retryConfig``: from baseDelayMs doubling to maxDelayMs, with jitter); its
registers read as errors that say when the next attempt is.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from framework.core import Clock, Logger
from framework.polling import RetryConfig
from providers.modbus.blocks import Block, Slot, alone
from providers.modbus.settings import RegisterConfig, SlaveConfig

# The meaning of each Modbus exception code (Modbus application protocol, 7).
EXCEPTION_CODES = {
    1: "ILLEGAL FUNCTION", 2: "ILLEGAL DATA ADDRESS", 3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE", 5: "ACKNOWLEDGE", 6: "SERVER DEVICE BUSY",
    7: "NEGATIVE ACKNOWLEDGE", 8: "MEMORY PARITY ERROR", 10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
# pymodbus logs its own failures as plain text lines on stderr ("Failed to
# connect...", "No response received..."), which break the JSON log stream; each
# of them is reported here, as a structured event naming the slave and register.
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)
_TABLE_READS = {"holding": "read_holding_registers", "input": "read_input_registers",
                "coil": "read_coils", "discrete": "read_discrete_inputs"}


@dataclass(slots=True)
class Reading:
    """One register of one slave as read in one poll: a value, or why there is none.
    ``version`` is set by the source once it has seen the saved one."""

    slave: SlaveConfig
    register: RegisterConfig
    item_id: str
    read_at: datetime
    value: Any = None
    raw: list[int] | None = None
    error: str | None = None
    version: str = ""


class SlaveUnavailableError(Exception):
    """The slave could not be read at all this poll (connection, deadline)."""


class SlaveReader:
    def __init__(self, slave: SlaveConfig, blocks: Sequence[Block], *,
                 timeout_s: float, retry: RetryConfig, clock: Clock, logger: Logger) -> None:
        self.slave = slave
        self._blocks = list(blocks)
        self._timeout_s = timeout_s
        self._retry = retry
        self._clock = clock
        self._log = logger.bind(slave=slave.label)
        self._client: AsyncModbusTcpClient | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error = ""
        self._rng = random.Random()

    async def read(self) -> list[Reading]:
        read_at = datetime.fromtimestamp(self._clock.time(), UTC)
        waiting = self._next_attempt - self._clock.monotonic()
        if self._client is None and waiting > 0:
            return self._all_failed(read_at, f"{self._last_error}; next attempt in "
                                               f"{waiting * 1000:.0f} ms")
        try:
            async with asyncio.timeout(self._timeout_s):
                client = await self._connected()
                readings = [r for block in self._blocks
                            for r in await self._read_block(client, block, read_at)]
        except TimeoutError:
            return self._give_up(read_at, f"no answer within {self._timeout_s * 1000:.0f} ms "
                                          "(slave timeout)")
        except (SlaveUnavailableError, ModbusException, OSError) as exc:
            return self._give_up(read_at, str(exc) or type(exc).__name__)
        if self._failures:
            self._log.info("modbus_slave_reconnected", after_failures=self._failures)
        self._failures = 0
        return readings

    async def aclose(self) -> None:
        self._drop()

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        slave = self.slave
        # reconnect_delay=0: no reconnection in the background; this reader decides
        # when to try again (the backoff).
        client = AsyncModbusTcpClient(slave.host, port=slave.port, timeout=self._timeout_s,
                                      retries=0, reconnect_delay=0)
        self._client = client
        if not await client.connect():
            raise SlaveUnavailableError(f"cannot connect to {slave.host}:{slave.port}")
        return client

    async def _read_block(self, client: AsyncModbusTcpClient, block: Block,
                          read_at: datetime) -> list[Reading]:
        response = await self._request(client, block.table, block.address, block.count)
        if response.isError() and len(block.slots) > 1:
            # Which register is refused: read each on its own, so the error names it
            # and the others still publish.
            return [r for slot in block.slots
                    for r in await self._read_block(client, alone(slot), read_at)]
        if response.isError():
            [slot] = block.slots
            return [self._refused(slot, read_at, response.exception_code)]
        data = response.bits if block.bits else response.registers
        readings = []
        slave = self.slave
        for slot in block.slots:
            try:
                value, raw = slot.extract(data, slot.offset)
            except (ValueError, IndexError, struct.error) as exc:
                readings.append(self._reading(slot, read_at,
                                              error=f"cannot be decoded: {exc}"))
                continue
            readings.append(Reading(slave, slot.register, slot.item_id, read_at, value, raw))
        return readings

    async def _request(self, client: AsyncModbusTcpClient, table: str, address: int,
                       count: int) -> Any:
        read = getattr(client, _TABLE_READS[table])
        return await read(address, count=count, device_id=self.slave.unit_id)

    def _refused(self, slot: Slot, read_at: datetime, code: int) -> Reading:
        meaning = EXCEPTION_CODES.get(code, "unknown exception code")
        return self._reading(slot, read_at,
                             error=f"refused by the slave: Modbus exception {code} ({meaning})")

    def _give_up(self, read_at: datetime, reason: str) -> list[Reading]:
        self._drop()
        self._failures += 1
        delay = _backoff_s(self._retry, self._failures, self._rng)
        self._next_attempt = self._clock.monotonic() + delay
        self._last_error = reason
        self._log.warning("modbus_slave_unavailable", error=reason,
                          failures=self._failures, retry_in_ms=round(delay * 1000))
        return self._all_failed(read_at, reason)

    def _all_failed(self, read_at: datetime, reason: str) -> list[Reading]:
        return [self._reading(slot, read_at, error=f"not read: {reason}")
                for block in self._blocks for slot in block.slots]

    def _reading(self, slot: Slot, read_at: datetime, *, error: str) -> Reading:
        slave, register = self.slave, slot.register
        where = (f"modbus slave {slave.label} ({slave.host}:{slave.port} unit "
                 f"{slave.unit_id}), register {register.name} ({register.resolved_table} "
                 f"{register.address})")
        return Reading(slave, register, slot.item_id, read_at, error=f"{where}: {error}")

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _backoff_s(retry: RetryConfig, failures: int, rng: random.Random) -> float:
    delay_ms: float = min(retry.max_delay_ms, retry.base_delay_ms * 2 ** min(failures - 1, 30))
    return delay_ms * (1.0 + rng.uniform(-retry.jitter_ratio, retry.jitter_ratio)) / 1000
