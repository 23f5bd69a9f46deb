"""``email_send``'s parameters: recipients, subject, text and/or HTML, attachments.

Addresses are checked for shape (``local@domain``, no display name, no line
break) and headers for line breaks, so event data cannot add a header or a
recipient. Every error names the parameter (``params.to[1]``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_FILENAME = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 10


def check_address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address (local@domain, no display name)")
    return value


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Attachment(_Params):
    """One attachment: its content inline (``text``, or ``base64`` for bytes, e.g. from
    the stream payload) or fetched from ``url`` (through the guarded network)."""

    filename: str
    content_type: str = Field("application/octet-stream", alias="contentType")
    text: str | None = None
    base64_content: str | None = Field(None, alias="base64")
    url: str | None = Field(None, pattern=r"^https?://")

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _FILENAME.match(value):
            raise ValueError("a file name without path separators or control characters")
        return value

    @field_validator("content_type")
    @classmethod
    def _mime_type(cls, value: str) -> str:
        if not _CONTENT_TYPE.match(value.lower()):
            raise ValueError(f"{value!r} is not a MIME type (type/subtype)")
        return value.lower()

    @field_validator("base64_content")
    @classmethod
    def _decodes(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("not valid base64") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [name for name, value in (("text", self.text), ("base64", self.base64_content),
                                          ("url", self.url)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, base64, url (given: "
                             f"{', '.join(given) or 'none'})")
        return self

    def inline_bytes(self) -> bytes | None:
        if self.text is not None:
            return self.text.encode()
        if self.base64_content is not None:
            return base64.b64decode(self.base64_content)
        return None


class EmailSendParams(_Params):
    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[str] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[str] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    # None: the configured sender (SMTP_FROM).
    sender: str | None = Field(None, alias="from")
    reply_to: str | None = Field(None, alias="replyTo")
    subject: str = Field(min_length=1, max_length=998)
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for index, address in enumerate(value):
            try:
                check_address(address)
            except ValueError as exc:
                raise ValueError(f"[{index}]: {exc}") from None
        return value

    @field_validator("sender", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("a subject is one line (no CR or LF)")
        return value

    @model_validator(mode="after")
    def _has_body(self) -> Self:
        if self.text is None and self.html is None:
            raise ValueError("give text, html or both")
        return self

    def recipients(self) -> list[str]:
        return list(dict.fromkeys([*self.to, *self.cc, *self.bcc]))


