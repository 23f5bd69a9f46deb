"""Which read requests fetch a slave's registers: registers of one table that lie
close together (gaps of at most ``max_gap``) are read in one request, within the
protocol's limit on one read; each register's value is then cut out of it."""

from __future__ import annotations

from collections.abc import Sequence
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
from providers.modbus.words import BIT_TYPES, WIDTH, Order, decode, json_number


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``,
    holding ``registers``."""

    table: Table
    address: int
    count: int
    registers: tuple[RegisterConfig, ...]


def plan_blocks(registers: Sequence[RegisterConfig], max_gap: int) -> list[Block]:
    blocks: list[Block] = []
    ordered = sorted(registers, key=lambda r: (r.resolved_table, r.address))
    current: list[RegisterConfig] = []
    for register in ordered:
        if current and not _joins(current, register, max_gap):
            blocks.append(_block(current))
            current = []
        current.append(register)
    if current:
        blocks.append(_block(current))
    return blocks


def _joins(current: list[RegisterConfig], register: RegisterConfig, max_gap: int) -> bool:
    first = current[0]
    end = max(r.address + r.span for r in current)
    limit = MAX_READ_BITS if first.resolved_table in BIT_TABLES else MAX_READ_REGISTERS
    return (register.resolved_table == first.resolved_table
            and register.address - end <= max_gap
            and max(end, register.address + register.span) - first.address <= limit)


def _block(registers: list[RegisterConfig]) -> Block:
    start = registers[0].address
    end = max(r.address + r.span for r in registers)
    return Block(registers[0].resolved_table, start, end - start, tuple(registers))


@dataclass(frozen=True)
class Orders:
    word_order: Order
    byte_order: Order


def register_value(register: RegisterConfig, block: Block, data: Sequence[int] | Sequence[bool],
                   orders: Orders) -> tuple[Any, list[int] | None]:
    """The published value of ``register`` (a list when ``count`` > 1) cut out of a
    block's response, and the raw registers it came from (None for bits)."""
    offset = register.address - block.address
    if register.type in BIT_TYPES:
        bits = [bool(b) for b in data[offset:offset + register.count]]
        return (bits[0] if register.count == 1 else bits), None
    words = [int(w) for w in data[offset:offset + register.span]]
    width = WIDTH[register.type]
    word_order = register.word_order or orders.word_order
    byte_order = register.byte_order or orders.byte_order
    values = [_scaled(decode(words[i:i + width], register.type, word_order=word_order,
                             byte_order=byte_order), register.scale)
              for i in range(0, len(words), width)]
    return (values[0] if register.count == 1 else values), words


def slave_orders(slave: SlaveConfig, word_order: Order, byte_order: Order) -> Orders:
    return Orders(slave.word_order or word_order, slave.byte_order or byte_order)


def _scaled(value: int | float, scale: float | None) -> int | float | str:
    if scale is not None:
        # Rounded: 123 x 0.1 is 12.3, not 12.300000000000001.
        value = round(value * scale, 9)
    return json_number(value)
