"""The SMTP server ``email_send`` talks to, and what its answers mean.

The server is configuration, never a parameter: an event must not choose where
mail goes out from. :meth:`SmtpSettings.from_env` reads ``SMTP_HOST``,
``SMTP_PORT``, ``SMTP_SECURITY`` (``starttls``, the default; ``tls``: implicit TLS,
port 465; ``none``), ``SMTP_USERNAME``, ``SMTP_FROM`` and ``SMTP_CA_FILE``; the
password is read from ``SMTP_PASSWORD`` (the variable named by
``password_env``) at each send, so a rotated secret is used without a restart.

A 4xx reply, a dropped connection or a timeout is retryable
(:class:`~framework.core.TransientSourceError`); a 5xx reply (an unknown mailbox,
refused credentials) is not (:class:`~framework.core.PermanentSourceError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aiosmtplib import errors as smtp_errors

from framework.core import ConfigError, PermanentSourceError, SourceError, TransientSourceError

Security = Literal["starttls", "tls", "none"]
_SECURITY: tuple[Security, ...] = ("starttls", "tls", "none")


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password_env: str = "SMTP_PASSWORD"
    # The From of a call that gives none.
    default_sender: str | None = None
    # The domain of derived Message-IDs; None: the sender's domain.
    message_id_domain: str | None = None
    # Each SMTP command's own timeout (the call's timeout bounds the whole send).
    command_timeout_s: float = 10.0
    validate_certs: bool = True
    ca_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings:
        """ConfigError (exit 78 at start) naming the variable when one is malformed."""
        security = env.get("SMTP_SECURITY", "starttls").lower()
        if security not in _SECURITY:
            raise ConfigError(f"SMTP_SECURITY must be one of {', '.join(_SECURITY)}, "
                             f"not {security!r}")
        default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
        port_text = env.get("SMTP_PORT", str(default_port))
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"SMTP_PORT must be a port number, not {port_text!r}")
        return cls(host=env.get("SMTP_HOST") or None, port=int(port_text),
                   security=security,
                   username=env.get("SMTP_USERNAME") or None,
                   default_sender=env.get("SMTP_FROM") or None,
                   ca_file=env.get("SMTP_CA_FILE") or None)

    @property
    def target(self) -> str:
        return f"smtp://{self.host}:{self.port}"


def classify_smtp_error(exc: smtp_errors.SMTPException, target: str) -> SourceError:
    """The error to raise for an aiosmtplib failure (its text is the server's reply,
    which holds no credential)."""
    if isinstance(exc, smtp_errors.SMTPRecipientsRefused):
        refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        temporary = any(400 <= r.code < 500 for r in exc.recipients)
        text = f"{target} refused every recipient: {refused}"
        return TransientSourceError(text) if temporary else PermanentSourceError(text)
    if isinstance(exc, smtp_errors.SMTPAuthenticationError):
        return PermanentSourceError(f"{target} refused the credentials: {exc.code} {exc.message}")
    if isinstance(exc, smtp_errors.SMTPResponseException) \
            and not isinstance(exc, smtp_errors.SMTPConnectResponseError):
        text = f"{target} answered {exc.code} {exc.message}"
        return PermanentSourceError(text) if exc.code >= 500 else TransientSourceError(text)
    if isinstance(exc, smtp_errors.SMTPNotSupported):
        return PermanentSourceError(f"{target}: {exc} (check SMTP_SECURITY)")
    return TransientSourceError(f"{target}: {type(exc).__name__}: {exc}")
