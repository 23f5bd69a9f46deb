"""``cdc-postgres``'s providerConfig."""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

# A plain identifier, optionally schema-qualified: quoting is never needed, so a
# name can be put in SQL and compared with the catalog without surprises.
_TABLE = re.compile(r"^(?:[a-z_][a-z0-9_$]{0,62}\.)?[a-z_][a-z0-9_$]{0,62}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class CdcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    # postgresql://user:password@host:port/db (or key=value form); never logged.
    connection_url: SecretStr
    table: str | None = None
    tables: list[str] = Field(default_factory=list)
    # Default: derived from the connector's name (see qualified_names / the factory).
    slot: str | None = None
    publication: str | None = None
    # Created when missing (CREATE PUBLICATION ... FOR TABLE; pg_create_logical_
    # replication_slot with pgoutput). False: a missing one is a clear error.
    create_publication: bool = True
    create_slot: bool = True
    # On idle tables, the slot is moved to the server's flushed LSN this often, so
    # that it never holds WAL back (Debezium's heartbeat.interval.ms problem).
    heartbeat_interval_ms: int = Field(10_000, ge=100, le=3_600_000)
    # A change bigger than this is not read: it goes to the rejected stream, named.
    max_change_bytes: int = Field(16 * 1024 * 1024, ge=1024)

    @field_validator("connection_url")
    @classmethod
    def _parses(cls, value: SecretStr) -> SecretStr:
        try:
            parts = conninfo_to_dict(value.get_secret_value())
        except Exception:  # psycopg says why with the secret in it: not repeated
            raise ValueError("is not a PostgreSQL connection URL or conninfo "
                             "(postgresql://user:password@host:port/db)") from None
        if not parts.get("host") and not parts.get("hostaddr"):
            raise ValueError("names no host")
        return value

    @field_validator("slot", "publication")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"{value!r} is not a plain lower-case identifier "
                             "(letters, digits, _; at most 63)")
        return value

    @field_validator("tables")
    @classmethod
    def _table_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_table(name)
        if len(set(value)) != len(value):
            raise ValueError("names a table twice")
        return value

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_table(value)

    @model_validator(mode="after")
    def _some_table(self) -> CdcConfig:
        if self.table and self.tables:
            raise ValueError("give table or tables, not both")
        if not self.table and not self.tables:
            raise ValueError("table or tables is required")
        return self

    def qualified_tables(self) -> list[str]:
        """``schema.table`` of every captured table (``public`` when none is given)."""
        names = self.tables or [self.table or ""]
        return [name if "." in name else f"public.{name}" for name in names]


def default_name(connector: str) -> str:
    """A slot or publication name made from a connector's name."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", connector.lower())
    return f"fleet_{cleaned}"[:63]


def _check_table(name: str) -> str:
    if not _TABLE.match(name):
        raise ValueError(f"table {name!r} is not [schema.]table in plain lower-case "
                         "identifiers")
    return name
