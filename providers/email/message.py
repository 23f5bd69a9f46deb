"""The MIME message of one ``email_send`` call.

Its ``Message-ID`` is derived from the step's idempotency key (the same on every
retry and redelivery), so a message sent twice after a crash carries one id and
mail systems that deduplicate on it (and the reader's client threading) see one
message.
"""

from __future__ import annotations

import email.utils
import hashlib
from email.message import EmailMessage

from providers.email.params import EmailSendParams


def message_id_for(idempotency_key: str, domain: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def build_message(call: EmailSendParams, *, sender: str, message_id: str, now_s: float,
                  attachments: list[tuple[str, str, bytes]]) -> EmailMessage:
    """``attachments``: (file name, MIME type, content) in the order given. Bcc
    recipients are not written into the message (they are envelope recipients only)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(call.to)
    if call.cc:
        message["Cc"] = ", ".join(call.cc)
    if call.reply_to:
        message["Reply-To"] = call.reply_to
    message["Subject"] = call.subject
    message["Message-ID"] = message_id
    message["Date"] = email.utils.formatdate(now_s, usegmt=True)
    if call.text is not None:
        message.set_content(call.text)
        if call.html is not None:
            message.add_alternative(call.html, subtype="html")
    else:
        message.set_content(call.html or "", subtype="html")
    for filename, content_type, content in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message
