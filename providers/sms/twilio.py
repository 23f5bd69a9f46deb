"""Twilio's Programmable Messaging: one ``POST /2010-04-01/Accounts/{AccountSid}/
Messages.json`` per recipient (form-encoded ``To``, ``From`` or
``MessagingServiceSid``, ``Body``), HTTP Basic authentication with the account SID
and auth token (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``).

Twilio answers 201 with the Message resource (``sid`` ``SM...``, ``status``
``queued``), or an error object ``{"code", "message", "more_info", "status"}``:
its code and message are quoted (21211 invalid To, 21606 From not a Twilio number,
20003 authentication, 20429 too many requests).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from framework.consuming import CallContext
from framework.core import MalformedResponseError
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, check_answer, json_object
from providers.sms.params import SmsSendParams

TWILIO_API_BASE = "https://api.twilio.com"


@dataclass(frozen=True)
class TwilioSettings:
    api_base: str = TWILIO_API_BASE
    account_sid_env: str = "TWILIO_ACCOUNT_SID"
    auth_token_env: str = "TWILIO_AUTH_TOKEN"


class TwilioSms:
    def __init__(self, settings: TwilioSettings, client: GuardedClient,
                 secrets: EnvSecrets) -> None:
        self._settings = settings
        self._client = client
        self._secrets = secrets

    async def send_one(self, call: SmsSendParams, number: str,
                       context: CallContext) -> dict[str, Any]:
        settings = self._settings
        sid = self._secrets.read(settings.account_sid_env, capability="sms_send",
                                 what="Twilio account SID")
        token = self._secrets.read(settings.auth_token_env, capability="sms_send",
                                   what="Twilio auth token")
        form = {"To": number, "Body": call.body}
        if call.messaging_service_sid is not None:
            form["MessagingServiceSid"] = call.messaging_service_sid
        else:
            form["From"] = call.sender or ""
        basic = base64.b64encode(f"{sid}:{token}".encode()).decode()
        url = f"{settings.api_base.rstrip('/')}/2010-04-01/Accounts/{quote(sid)}/Messages.json"
        label = "Twilio Messages"
        response = await self._client.request(
            "POST", url, step_hosts=context.hosts, label=label,
            headers={"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded"},
            content=urlencode(form).encode())
        answer = json_object(response)
        check_answer(response, label=label, detail=self._secrets.redact(_describe(answer)),
                     now_s=context.clock.time())
        if not isinstance(answer.get("sid"), str):
            raise MalformedResponseError(f"{label} answered {response.status_code} without "
                                         "a message sid")
        return {"to": number, "id": answer["sid"], "status": answer.get("status")}


def _describe(answer: dict[str, Any]) -> str:
    code = answer.get("code")
    message = str(answer.get("message", ""))[:300]
    return f"code {code}: {message}" if code is not None else message
