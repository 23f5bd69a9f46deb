"""``email-imap``'s providerConfig."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel


class ImapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    host: str = Field(min_length=1)
    port: int = Field(993, ge=1, le=65_535)
    # Implicit TLS (IMAPS). STARTTLS is not offered: the client library has none, and a
    # downgrade-prone upgrade is what implicit TLS exists to avoid.
    tls: bool = True
    ca_file: str | None = None
    username: str = Field(min_length=1)
    password: SecretStr
    folder: str = Field("INBOX", min_length=1)
    # IMAP SEARCH criteria added to "UID n:*", e.g. 'FROM "alerts@example.com"'.
    search: str = ""
    mark_seen: bool = False
    move_to: str | None = None
    max_message_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_text_bytes: int = Field(1024 * 1024, gt=0)
    max_attachment_content_bytes: int = Field(256 * 1024, ge=0)
    dedupe_window_ms: int = Field(7 * 24 * 3600 * 1000, ge=0)
