"""A row change as an event ``value`` (the shape in docs/cdc.md)."""

from __future__ import annotations

from typing import Any

from providers.postgres.lsn import format_lsn
from providers.postgres.pgoutput import UNCHANGED, Cell, Change, Column
from providers.postgres.source import Row
from providers.postgres.values import column_value


def change_value(change: Change, primary_key: list[str] | None = None) -> dict[str, Any]:
    """``{op, table, before, after, key, identity}``; raises ValueError (the row is
    then kept in the rejected stream) when the change could not be read. ``key``:
    the table's primary key, else the columns of its replica identity."""
    relation = change.relation
    if change.error:
        raise ValueError(f"{change.op} on {relation.table} at {change.lsn}: {change.error}")
    columns = relation.columns
    value: dict[str, Any] = {
        "op": change.op, "table": relation.table,
        "before": None if change.old is None else _row(columns, change.old,
                                                       keys_only=change.old_is_key),
        "after": None if change.new is None else _row(columns, change.new),
        "key": primary_key or [column.name for column in columns if column.key],
        "identity": relation.identity,
    }
    if change.new is not None:
        unchanged = [c.name for c, cell in zip(columns, change.new, strict=False)
                     if cell == UNCHANGED]
        if unchanged:  # TOASTed values the update did not touch are not sent
            value["unchangedColumns"] = unchanged
    return value


def _row(columns: tuple[Column, ...], cells: tuple[Cell, ...], *,
         keys_only: bool = False) -> dict[str, Any]:
    if len(cells) != len(columns):
        raise ValueError(f"a row of {len(cells)} columns, the relation has {len(columns)}")
    row: dict[str, Any] = {}
    for column, cell in zip(columns, cells, strict=True):
        if cell == UNCHANGED or (keys_only and not column.key):
            continue
        row[column.name] = None if cell is None else column_value(
            column.type_oid, cell.decode() if isinstance(cell, bytes) else cell)
    return row


def item_id(row: Row) -> str:
    """Unique per change: the end of its transaction and its place in it."""
    return f"{format_lsn(row.txn.commit_lsn)}:{row.index}"


def metadata(row: Row) -> dict[str, Any]:
    return {"lsn": row.change.lsn, "commitLsn": format_lsn(row.txn.commit_lsn),
            "xid": row.txn.xid, "index": row.index}
