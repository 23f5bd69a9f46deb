"""A real SMTP server for the e-mail tests: aiosmtpd on a free port of 127.0.0.1,
keeping every message it accepted (read back with the ``email`` parser).

``security`` ``"starttls"`` offers STARTTLS (and requires it before AUTH), ``"tls"``
speaks TLS from the first byte, both with a self-signed certificate for 127.0.0.1
made by ``openssl`` (a missing binary fails with how to install it). With a
``password``, AUTH PLAIN/LOGIN is required for user ``alerts``. Recipients at
``@refused.test`` get ``550``, at ``@busy.test`` get ``451``.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from framework.testing import free_port

SMTP_USER = "alerts"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for IP 127.0.0.1."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed for the SMTP TLS tests: apt-get install openssl")
    cert, key = directory / "smtp.crt", directory / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any,
                          address: str, rcpt_options: list[str]) -> str:
        if address.endswith("@refused.test"):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if address.endswith("@busy.test"):
            return f"451 4.3.0 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 queued"


class SmtpPeer:
    def __init__(self, tmp: Path, *, security: Literal["none", "starttls", "tls"] = "none",
                 password: str | None = None) -> None:
        self.port = free_port()
        self.security = security
        self.password = password
        self.cert: Path | None = None
        self._handler = _Handler()
        kwargs: dict[str, Any] = {}
        if security != "none":
            self.cert, key = make_certificate(tmp)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, key)
            if security == "tls":
                kwargs["ssl_context"] = context
            else:
                kwargs.update(tls_context=context, require_starttls=True)
        if password is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=security != "none")
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port,
                                      **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode() \
            and auth_data.password == (self.password or "").encode()
        return AuthResult(success=ok, handled=False)

    @property
    def received(self) -> list[Received]:
        return self._handler.received

    def __enter__(self) -> SmtpPeer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
