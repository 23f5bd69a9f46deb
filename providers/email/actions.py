"""``email_send``: one message through the configured SMTP server (aiosmtplib).

STARTTLS, implicit TLS or plain (:class:`~providers.email.smtp.SmtpSettings`), with
authentication when a user name is configured; text, HTML or both; attachments
inline (from the event) or fetched from a URL through the guarded network. The
result: ``{"messageId", "accepted": [...], "refused": {address: reply}}`` (a
partly refused send succeeds and lists the refusals, which a postcondition can
check). A redelivered step finds its record in the :class:`SentLedger` and does
not send again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosmtplib
from aiosmtplib import errors as smtp_errors
from pydantic import ValidationError

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, describe_validation_error
from framework.core import PermanentSourceError
from providers.email.message import build_message, message_id_for
from providers.email.params import Attachment, EmailSendParams
from providers.email.smtp import SmtpSettings, classify_smtp_error
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, SentLedger, check_answer

EMAIL_SEND_ID = "email_send"
EMAIL_SEND_VERSION = "1.0.0"


class EmailActions:
    def __init__(self, settings: SmtpSettings, *, client: GuardedClient,
                 secrets: EnvSecrets | None = None, ledger: SentLedger | None = None,
                 policy: CallPolicy | None = None) -> None:
        """``client``: fetches URL attachments (shared with the other HTTP actions)."""
        self._settings = settings
        self._client = client
        self._secrets = secrets or EnvSecrets()
        self._ledger = ledger or SentLedger()
        self._policy = policy or CallPolicy(timeout_s=30.0, max_retries=3)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            EMAIL_SEND_ID, EMAIL_SEND_VERSION, self.send, policy=self._policy,
            description="Send an e-mail (text/HTML, attachments) through the SMTP server",
            breaker_scope=lambda _params: self._settings.target)

    async def send(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        try:
            call = EmailSendParams.model_validate(dict(params))
        except ValidationError as exc:
            raise ValueError(f"email_send params: {describe_validation_error(exc)}") from None
        settings = self._settings
        if not settings.host:
            raise ValueError("email_send: no SMTP server is configured (SMTP_HOST)")
        sender = call.sender or settings.default_sender
        if sender is None:
            raise ValueError("email_send: params.from is missing and no default sender is "
                             "configured (SMTP_FROM)")

        async def deliver() -> dict[str, Any]:
            return await self._deliver(call, sender, context)

        return await self._ledger.once(context, deliver)

    async def _deliver(self, call: EmailSendParams, sender: str,
                       context: CallContext) -> dict[str, Any]:
        settings = self._settings
        domain = settings.message_id_domain or sender.rpartition("@")[2]
        message_id = message_id_for(context.idempotency_key, domain)
        attachments = [await self._content_of(a, context) for a in call.attachments]
        message = build_message(call, sender=sender, message_id=message_id,
                                now_s=context.clock.time(), attachments=attachments)
        password = None
        if settings.username:
            password = self._secrets.read(settings.password_env, capability=EMAIL_SEND_ID,
                                          what="SMTP password")
        recipients = call.recipients()
        try:
            refused, reply = await aiosmtplib.send(
                message, sender=sender, recipients=recipients, hostname=settings.host,
                port=settings.port, username=settings.username, password=password,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                validate_certs=settings.validate_certs, cert_bundle=settings.ca_file,
                timeout=settings.command_timeout_s)
        except smtp_errors.SMTPException as exc:
            error = classify_smtp_error(exc, settings.target)
            raise type(error)(self._secrets.redact(str(error))) from None
        refusals = {address: f"{answer.code} {answer.message}"
                    for address, answer in refused.items()}
        context.logger.info("email_sent", message_id=message_id, recipients=len(recipients),
                            refused=len(refusals), target=settings.target)
        return {"messageId": message_id,
                "accepted": [r for r in recipients if r not in refusals],
                "refused": refusals, "reply": reply}

    async def _content_of(self, attachment: Attachment,
                          context: CallContext) -> tuple[str, str, bytes]:
        inline = attachment.inline_bytes()
        if inline is not None:
            return attachment.filename, attachment.content_type, inline
        assert attachment.url is not None  # one of the three, by the model
        response = await self._client.request("GET", attachment.url, step_hosts=context.hosts)
        label = f"attachment {attachment.filename} (GET {response.request.url.host})"
        check_answer(response, label=label, detail=response.text[:200],
                     now_s=context.clock.time())
        if response.status_code >= 300:
            raise PermanentSourceError(f"{label} answered {response.status_code}: "
                                       "redirects are not followed")
        return attachment.filename, attachment.content_type, response.content
