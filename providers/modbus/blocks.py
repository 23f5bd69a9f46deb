"""Which read requests fetch a slave's registers, and how each register's value is
cut out of a response.

Registers of one table that lie close together (gaps of at most ``max_gap``)
are read in one request, within the protocol's limit on one read. Each register
is compiled once, when the connector is built, into a :class:`Slot`: its item id,
its offset in its block and a decoder for its type, count, orders and scale, so
that a poll of thousands of registers does no per-register lookups.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from providers.modbus.settings import (
    BIT_TABLES,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    RegisterConfig,
    SlaveConfig,
    Table,
)
from providers.modbus.words import BIT_TYPES, WIDTH, Order, json_number, struct_code

# (registers or bits as read, offset of the entry) -> (published value, raw
# registers or None).
Extract = Callable[[Sequence[Any], int], tuple[Any, list[int] | None]]


@dataclass(frozen=True, slots=True)
class Slot:
    """One register entry of a block: where its value is and how it is decoded."""

    register: RegisterConfig
    item_id: str
    offset: int
    extract: Extract


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    slots: tuple[Slot, ...]

    @property
    def bits(self) -> bool:
        return self.table in BIT_TABLES


def plan_blocks(slave: SlaveConfig, max_gap: int, word_order: Order,
                byte_order: Order) -> list[Block]:
    orders = (slave.word_order or word_order, slave.byte_order or byte_order)
    blocks: list[Block] = []
    ordered = sorted(slave.registers, key=lambda r: (r.resolved_table, r.address))
    current: list[RegisterConfig] = []
    end = 0
    for register in ordered:
        if current and not _joins(current[0], end, register, max_gap):
            blocks.append(_block(slave, current, end, orders))
            current = []
        end = register.address + register.span if not current else max(
            end, register.address + register.span)
        current.append(register)
    if current:
        blocks.append(_block(slave, current, end, orders))
    return blocks


def alone(slot: Slot) -> Block:
    """A block reading one register entry by itself."""
    register = slot.register
    return Block(register.resolved_table, register.address, register.span,
                 (Slot(register, slot.item_id, 0, slot.extract),))


def _joins(first: RegisterConfig, end: int, register: RegisterConfig, max_gap: int) -> bool:
    """Whether ``register`` joins the block from ``first`` to ``end`` (exclusive)."""
    limit = MAX_READ_BITS if first.resolved_table in BIT_TABLES else MAX_READ_REGISTERS
    return (register.resolved_table == first.resolved_table
            and register.address - end <= max_gap
            and max(end, register.address + register.span) - first.address <= limit)


def _block(slave: SlaveConfig, registers: list[RegisterConfig], end: int,
           orders: tuple[Order, Order]) -> Block:
    start = registers[0].address
    slots = tuple(Slot(r, f"{slave.label}/{r.name}", r.address - start,
                       extractor(r, r.word_order or orders[0], r.byte_order or orders[1]))
                  for r in registers)
    return Block(registers[0].resolved_table, start, end - start, slots)


def extractor(register: RegisterConfig, word_order: Order, byte_order: Order) -> Extract:
    """The decoder of one register entry, from the start of its own data."""
    count = register.count
    if register.type in BIT_TYPES:
        def bits(data: Sequence[Any], offset: int) -> tuple[Any, None]:
            values = [bool(b) for b in data[offset:offset + count]]
            if len(values) < count:
                raise ValueError(f"{len(values)} bits in the answer, {count} expected")
            return (values[0] if count == 1 else values), None
        return bits
    width, span, scale = WIDTH[register.type], register.span, register.scale
    # Words to bytes in the register's byte order, then one unpack of every value.
    pack = struct.Struct(("<" if byte_order == "little" else ">") + f"{span}H").pack
    unpack = struct.Struct(f">{count}{struct_code(register.type)}").unpack
    swap = word_order == "little" and width > 1
    # Only a float can be NaN or infinite (a scale makes a float of an integer).
    may_be_special = register.type.startswith("float") or scale is not None

    def numbers(data: Sequence[Any], offset: int) -> tuple[Any, list[int]]:
        words = list(data[offset:offset + span])
        if len(words) < span:
            raise ValueError(f"{len(words)} registers in the answer, {span} expected")
        ordered = words
        if swap:
            ordered = [w for i in range(0, span, width) for w in reversed(words[i:i + width])]
        values: Sequence[Any] = unpack(pack(*ordered))
        if scale is not None:
            # Rounded: 123 x 0.1 is 12.3, not 12.300000000000001.
            values = [round(v * scale, 9) for v in values]
        if may_be_special:
            values = [json_number(v) for v in values]
        return (values[0] if count == 1 else list(values)), words
    return numbers
