"""email-imap's case for the provider contract: its config errors only (an IMAP
folder, not an HTTP source; tests/providers/test_imap.py runs it against Dovecot)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = "an IMAP folder, not an HTTP source: tests/providers/test_imap.py runs it on Dovecot"


class MailEvent(BaseModel):
    source: str
    value: dict[str, Any]
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="email-imap", signal_model=MailEvent,
        provider_config=lambda _url: {"host": "imap.example.org", "username": "ops",
                                      "password": "imap-secret-value"},
        required_fields=["host", "username", "password"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
