"""One connection to PostgreSQL for ``cdc-postgres``: it checks (and creates when
asked) the publication and the logical slot, peeks changes, reads the server's
LSN and moves the slot.

Every call has ``requestTimeoutMs`` as its total deadline, on the client
(``asyncio.timeout``) and on the server (``statement_timeout``); every failure is
a :class:`SourceError` naming the call and ``host:port/db``, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from framework.core import Logger, SourceError
from providers.postgres.lsn import format_lsn, parse_lsn
from providers.postgres.pgoutput import PeekedRow

T = TypeVar("T")

_PEEK = """SELECT lsn::text,
    CASE WHEN octet_length(data) <= %(cap)s THEN data ELSE substr(data, 1, 5) END,
    octet_length(data)
  FROM pg_logical_slot_peek_binary_changes(%(slot)s, NULL, %(count)s,
    'proto_version', '1', 'publication_names', %(publication)s)"""
_IDENTITIES = {"d": "default", "n": "nothing", "f": "full", "i": "index"}


@dataclass(frozen=True)
class Capture:
    """What is captured, and how: the slot, the publication, the tables."""

    url: str
    slot: str
    publication: str
    tables: tuple[str, ...]
    create_slot: bool
    create_publication: bool
    max_change_bytes: int


def describe_target(url: str) -> str:
    """``host:port/db`` of a connection URL: what errors and logs name."""
    parts = conninfo_to_dict(url)
    host = parts.get("host") or parts.get("hostaddr") or "?"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


class PgSession:
    """A connection and the calls ``cdc-postgres`` makes on it (module docstring)."""

    def __init__(self, capture: Capture, *, connector: str, deadline_s: float,
                 logger: Logger) -> None:
        self._capture = capture
        self._connector = connector
        self._deadline_s = deadline_s
        self._log = logger
        self.target = describe_target(capture.url)
        self._password = str(conninfo_to_dict(capture.url).get("password") or "")
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # schema.table -> its primary key's columns, read at open.
        self.primary_keys: dict[str, list[str]] = {}

    async def open(self) -> int:
        """Connect, check the server, the tables, the publication and the slot;
        the slot's confirmed position."""
        timeout_ms = int(self._deadline_s * 1000)
        options = (f"-c statement_timeout={timeout_ms} -c DateStyle=ISO,YMD "
                   "-c TimeZone=UTC -c bytea_output=hex -c extra_float_digits=3")
        self._conn = await self._call("connect", psycopg.AsyncConnection.connect(
            self._capture.url, autocommit=True, options=options,
            connect_timeout=max(1, int(self._deadline_s)),
            application_name=f"connector-fleet {self._connector}"[:63]))
        wal_level = await self._value("SHOW wal_level", "SHOW wal_level")
        if wal_level != "logical":
            raise self._error(f"has wal_level={wal_level}; logical decoding needs "
                              "wal_level=logical (a restart of PostgreSQL)")
        await self._check_tables()
        await self._ensure_publication()
        return await self._ensure_slot()

    async def _check_tables(self) -> None:
        rows = await self._rows("table lookup", """
            SELECT t, c.relreplident FROM unnest(%s::text[]) AS t
              LEFT JOIN pg_class c ON c.oid = to_regclass(t)""", [list(self._capture.tables)])
        missing = [table for table, identity in rows if identity is None]
        if missing:
            raise self._error(f"has no table {', '.join(missing)}")
        for table, identity in rows:
            self._log.info("cdc_table_identity", table=table,
                           replica_identity=_IDENTITIES.get(identity, identity))
        keys = await self._rows("primary keys", """
            SELECT t, a.attname FROM unnest(%s::text[]) AS t
              JOIN pg_index i ON i.indrelid = to_regclass(t) AND i.indisprimary
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             ORDER BY t, array_position(i.indkey::int2[], a.attnum)""",
                                [list(self._capture.tables)])
        self.primary_keys = {}
        for table, column in keys:
            self.primary_keys.setdefault(table, []).append(column)

    async def _ensure_publication(self) -> None:
        name = self._capture.publication
        exists = await self._rows("publication lookup",
                                  "SELECT 1 FROM pg_publication WHERE pubname = %s", [name])
        if not exists:
            if not self._capture.create_publication:
                raise self._error(f"has no publication {name} (createPublication is false)")
            tables = sql.SQL(", ").join(sql.Identifier(*t.split(".", 1))
                                        for t in self._capture.tables)
            await self._rows("CREATE PUBLICATION", sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), tables))
            self._log.info("cdc_publication_created", publication=name,
                           tables=list(self._capture.tables))
            return
        rows = await self._rows("publication tables", """
            SELECT schemaname || '.' || tablename FROM pg_publication_tables
             WHERE pubname = %s""", [name])
        missing = sorted(set(self._capture.tables) - {row[0] for row in rows})
        if missing:
            raise self._error(f"publication {name} lacks {', '.join(missing)} "
                              f"(ALTER PUBLICATION {name} ADD TABLE ...)")

    async def _ensure_slot(self) -> int:
        name = self._capture.slot
        rows = await self._rows("slot lookup", """
            SELECT plugin, database = current_database(), confirmed_flush_lsn::text
              FROM pg_replication_slots WHERE slot_name = %s""", [name])
        if not rows:
            if not self._capture.create_slot:
                raise self._error(f"has no replication slot {name} (createSlot is false)")
            created = await self._rows("create slot", """
                SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')""",
                                       [name])
            self._log.info("cdc_slot_created", slot=name, lsn=created[0][0])
            return parse_lsn(created[0][0])
        plugin, same_database, confirmed = rows[0]
        if plugin != "pgoutput" or not same_database:
            raise self._error(f"slot {name} is not a pgoutput slot of this database "
                              f"(plugin {plugin})")
        return parse_lsn(confirmed)

    async def peek(self, max_changes: int) -> list[PeekedRow]:
        """The next whole transactions after the slot, about ``max_changes`` changes."""
        cap = self._capture.max_change_bytes
        rows = await self._rows("peek", _PEEK, {
            "cap": cap, "slot": self._capture.slot, "count": max_changes,
            "publication": self._capture.publication})
        return [PeekedRow(lsn=lsn, data=bytes(data), size=size, cut=size > cap)
                for lsn, data, size in rows]

    async def flushed_lsn(self) -> int:
        """The end of the WAL on disk: every commit before it is visible to a peek
        (``pg_current_wal_lsn`` may be ahead of what a peek can read yet)."""
        return parse_lsn(str(await self._value("flushed LSN",
                                               "SELECT pg_current_wal_flush_lsn()::text")))

    async def advance(self, lsn: int) -> None:
        """Confirm the slot up to ``lsn``: the server may drop the WAL before it."""
        await self._rows("slot advance",
                         "SELECT end_lsn::text FROM pg_replication_slot_advance(%s, %s::pg_lsn)",
                         [self._capture.slot, format_lsn(lsn)])

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._deadline_s):
                    await conn.close()

    async def _value(self, what: str, query: str) -> Any:
        rows = await self._rows(what, query)
        return rows[0][0]

    async def _rows(self, what: str, query: Any, params: Any = None) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise SourceError(f"PostgreSQL {self.target}: the session is closed",
                              connector=self._connector)

        async def run() -> list[Any]:
            async with conn.cursor(binary=True) as cursor:
                await cursor.execute(query, params)
                return await cursor.fetchall() if cursor.description else []

        return await self._call(what, run())

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._deadline_s):
                return await call
        except TimeoutError:
            raise self._error(f"did not finish {what} within requestTimeoutMs") from None
        except (psycopg.Error, OSError) as exc:
            raise self._error(f"failed {what}: {type(exc).__name__}: "
                              f"{_first_line(str(exc))}") from None

    def _error(self, problem: str) -> SourceError:
        message = f"PostgreSQL {self.target} {problem}"
        if self._password:
            message = message.replace(self._password, "***")
        return SourceError(message, connector=self._connector)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "(no message)"
