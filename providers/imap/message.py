"""One fetched mail as the event's value: headers, text body and attachments' metadata
(with the content of small ones)."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any


@dataclass(frozen=True, slots=True)
class Mail:
    """A message as fetched: its UID, its size on the server and its bytes (only the
    header when it is over the size limit)."""

    uid: int
    size: int
    raw: bytes
    too_big: bool = False


@dataclass(frozen=True)
class MailLimits:
    max_message_bytes: int
    max_text_bytes: int
    max_attachment_content_bytes: int


def parse_mail(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)  # what policy.default builds
    return parsed


_HEADERS_ONLY = BytesHeaderParser(policy=email.policy.default)


def message_id(mail: Mail) -> str | None:
    # The header block alone: the same header value as a full parse gives (same policy),
    # without parsing the body and attachments a second time.
    value = _HEADERS_ONLY.parsebytes(mail.raw).get("Message-ID")
    return str(value).strip() if value else None


def mail_value(mail: Mail, limits: MailLimits) -> dict[str, Any]:
    """The event value of ``mail``; raises ``ValueError`` for a mail over the limit
    (the connector keeps its header in the rejected stream)."""
    if mail.too_big:
        raise ValueError(f"message UID {mail.uid} is {mail.size} bytes, over "
                         f"maxMessageBytes={limits.max_message_bytes}")
    parsed = parse_mail(mail.raw)
    value: dict[str, Any] = {
        name.lower().replace("-", ""): str(parsed[name])
        for name in ("From", "To", "Cc", "Subject", "Date", "Message-ID")
        if parsed[name] is not None
    }
    value["text"], value["textTruncated"] = _text(parsed, limits.max_text_bytes)
    value["attachments"] = [_attachment(part, limits) for part in parsed.iter_attachments()]
    value["size"] = mail.size
    return value


def _text(parsed: EmailMessage, limit: int) -> tuple[str, bool]:
    body = parsed.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "", False
    content = body.get_content()
    text = content if isinstance(content, str) else content.decode("utf-8", "replace")
    encoded = text.encode()
    if len(encoded) <= limit:
        return text, False
    return encoded[:limit].decode("utf-8", "ignore"), True


def _attachment(part: EmailMessage, limits: MailLimits) -> dict[str, Any]:
    content = part.get_payload(decode=True)
    data = content if isinstance(content, bytes) else b""
    described: dict[str, Any] = {
        "name": part.get_filename(),
        "type": part.get_content_type(),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if len(data) <= limits.max_attachment_content_bytes:
        described["content"] = base64.b64encode(data).decode()
    return described
