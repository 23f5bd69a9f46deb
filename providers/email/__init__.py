"""E-mail: the ``email_send`` action (SMTP through aiosmtplib)."""

from providers.email.actions import EMAIL_SEND_ID, EMAIL_SEND_VERSION, EmailActions
from providers.email.params import Attachment, EmailSendParams
from providers.email.smtp import SmtpSettings

__all__ = [
    "EMAIL_SEND_ID",
    "EMAIL_SEND_VERSION",
    "Attachment",
    "EmailActions",
    "EmailSendParams",
    "SmtpSettings",
]
