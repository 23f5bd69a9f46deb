"""The ``modbus-tcp`` providerConfig: one slave given inline (``host``, ``port``,
``unitId``, ``registers``) or several in ``slaves``; each register a name, an
address, a type and where it lives.

A register entry::

    {"name": "flow", "address": 10, "type": "float32", "count": 1, "scale": 0.1,
     "unit": "m3/h", "table": "holding", "wordOrder": "little", "byteOrder": "big",
     "deadband": 0.5}

``table`` defaults to ``holding`` for numbers and ``coil`` for ``bool``/``coil``
(``input`` and ``discrete`` are the read-only tables). ``count`` > 1 reads that
many consecutive values and publishes them as a list. ``wordOrder`` and
``byteOrder`` default to the slave's, which default to the connector's (big).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from providers.modbus.words import BIT_TYPES, WIDTH, Order

Table = Literal["holding", "input", "coil", "discrete"]
RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool",
                       "coil"]
BIT_TABLES = ("coil", "discrete")
# The protocol's limits on one read request (Modbus application protocol, 6.1-6.4).
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000
# Far above a real device map; keeps a typo (a list of 10^6 entries) out of the poller.
MAX_REGISTERS_PER_SLAVE = 5000
MAX_SLAVES = 500


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)


class RegisterConfig(_Model):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^/]+$")
    address: int = Field(ge=0, le=65535)
    type: RegisterType
    table: Table | None = None
    count: int = Field(1, ge=1, le=MAX_READ_BITS)
    scale: float | None = None
    unit: str | None = None
    word_order: Order | None = None
    byte_order: Order | None = None
    deadband: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _fits_its_table(self) -> Self:
        bits = self.type in BIT_TYPES
        if self.table is not None and (self.table in BIT_TABLES) != bits:
            kind = "bit" if bits else "register"
            raise ValueError(f"register {self.name}: type {self.type} is read from a {kind} "
                             f"table, not {self.table}")
        if bits and (self.scale is not None or self.deadband is not None):
            raise ValueError(f"register {self.name}: scale and deadband apply to numbers, "
                             f"not {self.type}")
        limit = MAX_READ_BITS if bits else MAX_READ_REGISTERS
        if self.span > limit:
            raise ValueError(f"register {self.name}: {self.count} x {self.type} spans "
                             f"{self.span} {'bits' if bits else 'registers'}, more than one "
                             f"Modbus read ({limit})")
        if self.address + self.span > 65536:
            raise ValueError(f"register {self.name}: address {self.address} + {self.span} "
                             "runs past 65535")
        return self

    @property
    def resolved_table(self) -> Table:
        return self.table or ("coil" if self.type in BIT_TYPES else "holding")

    @property
    def span(self) -> int:
        """Registers (or bits) this entry reads."""
        return self.count * (1 if self.type in BIT_TYPES else WIDTH[self.type])


class SlaveConfig(_Model):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^/]+$")
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    registers: list[RegisterConfig] = Field(min_length=1, max_length=MAX_REGISTERS_PER_SLAVE)
    word_order: Order | None = None
    byte_order: Order | None = None
    # A deadline for one whole read of this slave (connect included); default
    # the connector's requestTimeoutMs.
    timeout_ms: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _unique_register_names(self) -> Self:
        _no_duplicates([r.name for r in self.registers], f"slave {self.label}: register")
        return self

    @property
    def label(self) -> str:
        """The slave's name in item ids, events and errors."""
        return self.name or f"{self.host}:{self.port}#{self.unit_id}"


class ModbusConfig(_Model):
    # One slave inline...
    host: str | None = Field(None, min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    registers: list[RegisterConfig] | None = None
    # ...or several.
    slaves: list[SlaveConfig] | None = Field(None, min_length=1, max_length=MAX_SLAVES)
    word_order: Order = "big"
    byte_order: Order = "big"
    # "change": a reading is published when its value changed (by more than its
    # deadband); "every-poll": every reading of every poll.
    publish: Literal["change", "every-poll"] = "change"
    deadband: float = Field(0.0, ge=0)
    # Registers of one table this close together are read in one request.
    max_gap: int = Field(16, ge=0, le=MAX_READ_REGISTERS)

    @model_validator(mode="after")
    def _one_way_to_give_slaves(self) -> Self:
        inline = self.host is not None or self.registers is not None
        if inline and self.slaves is not None:
            raise ValueError("give host and registers, or a slaves list, not both")
        if self.slaves is None and (self.host is None or not self.registers):
            raise ValueError("host and registers are required (or a slaves list)")
        _no_duplicates([s.label for s in self.all_slaves()], "slave")
        return self

    def all_slaves(self) -> list[SlaveConfig]:
        if self.slaves is not None:
            return self.slaves
        assert self.host is not None and self.registers is not None
        return [SlaveConfig(host=self.host, port=self.port, unit_id=self.unit_id,
                            registers=self.registers)]


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} name {name!r} is given twice")
        seen.add(name)
