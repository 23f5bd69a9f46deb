"""cdc-postgres's case for the provider contract: its config errors only (a
replication slot, not an HTTP source); tests/providers/postgres/ and
tests/chaos/test_cdc_kill.py run it against a private PostgreSQL."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = ("a PostgreSQL replication slot, not an HTTP source: tests/providers/postgres/ "
       "runs it against a private PostgreSQL")


class RowChangeEvent(BaseModel):
    source: str
    value: dict[str, Any]
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="cdc-postgres", signal_model=RowChangeEvent,
        provider_config=lambda _url: {
            "connectionUrl": "postgresql://fleet:pg-contract-secret@db.example.org/shop",
            "table": "orders"},
        required_fields=["connectionUrl"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
