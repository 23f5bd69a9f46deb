"""OVHcloud's SMS API: ``POST /1.0/sms/{serviceName}/jobs`` with a signed request.

Each request carries ``X-Ovh-Application`` (application key), ``X-Ovh-Consumer``
(consumer key), ``X-Ovh-Timestamp`` (OVH's clock, in seconds) and
``X-Ovh-Signature``: ``"$1$"`` + the SHA-1 hex digest of
``AS+CK+METHOD+URL+BODY+TIMESTAMP`` joined with ``+`` (AS: the application secret;
URL: the full URL; BODY: the exact bytes sent). The timestamp must be OVH's: the
difference to ``GET /1.0/auth/time`` is measured once and then applied.

The answer lists ``ids``, ``validReceivers`` and ``invalidReceivers``; an error is
``{"message", "errorCode"?, "httpCode"?, "class"?}`` (``INVALID_SIGNATURE``,
``NOT_GRANTED_CALL``, ``Client::NotFound``...), quoted in the error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from framework.consuming import CallContext
from framework.core import MalformedResponseError
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, check_answer, json_object
from providers.sms.params import SmsSendParams

OVH_API_BASE = "https://eu.api.ovh.com"


@dataclass(frozen=True)
class OvhSettings:
    api_base: str = OVH_API_BASE
    # The SMS account of a call that names none.
    service_name: str | None = None
    application_key_env: str = "OVH_APPLICATION_KEY"
    application_secret_env: str = "OVH_APPLICATION_SECRET"
    consumer_key_env: str = "OVH_CONSUMER_KEY"


def ovh_signature(secret: str, consumer_key: str, method: str, url: str, body: bytes,
                  timestamp: int) -> str:
    text = "+".join([secret, consumer_key, method, url, body.decode(), str(timestamp)])
    return "$1$" + hashlib.sha1(text.encode()).hexdigest()  # OVH's scheme


class OvhSms:
    def __init__(self, settings: OvhSettings, client: GuardedClient,
                 secrets: EnvSecrets) -> None:
        self._settings = settings
        self._client = client
        self._secrets = secrets
        # OVH's clock minus ours, measured on the first call.
        self._time_delta_s: int | None = None

    async def send(self, call: SmsSendParams, context: CallContext) -> dict[str, Any]:
        settings = self._settings
        service = call.service_name or settings.service_name
        if not service:
            raise ValueError("sms_send: provider ovh needs params.serviceName or the "
                             "configured OVH_SMS_SERVICE")
        read = self._secrets.read
        app_key = read(settings.application_key_env, capability="sms_send",
                       what="OVH application key")
        secret = read(settings.application_secret_env, capability="sms_send",
                      what="OVH application secret")
        consumer = read(settings.consumer_key_env, capability="sms_send",
                        what="OVH consumer key")
        body: dict[str, Any] = {"message": call.body, "receivers": call.to,
                                "charset": "UTF-8", "noStopClause": False,
                                "priority": "high", "senderForResponse": call.sender is None}
        if call.sender is not None:
            body["sender"] = call.sender
        content = orjson.dumps(body)
        url = f"{settings.api_base.rstrip('/')}/1.0/sms/{quote(service, safe='')}/jobs"
        timestamp = int(context.clock.time()) + await self._delta_s(context)
        label = f"OVH SMS {service}"
        response = await self._client.request(
            "POST", url, step_hosts=context.hosts, label=label, content=content,
            headers={"Content-Type": "application/json", "X-Ovh-Application": app_key,
                     "X-Ovh-Consumer": consumer, "X-Ovh-Timestamp": str(timestamp),
                     "X-Ovh-Signature": ovh_signature(secret, consumer, "POST", url,
                                                      content, timestamp)})
        answer = json_object(response)
        check_answer(response, label=label, detail=self._secrets.redact(_describe(answer)),
                     now_s=context.clock.time())
        ids = answer.get("ids")
        if not isinstance(ids, list):
            raise MalformedResponseError(f"{label} answered {response.status_code} without ids")
        valid = [str(v) for v in answer.get("validReceivers", [])]
        return {"messages": [{"to": number, "id": str(job), "status": "queued"}
                             for number, job in zip(valid, ids, strict=False)],
                "invalid": [str(v) for v in answer.get("invalidReceivers", [])],
                "creditsRemoved": answer.get("totalCreditsRemoved")}

    async def _delta_s(self, context: CallContext) -> int:
        if self._time_delta_s is None:
            url = f"{self._settings.api_base.rstrip('/')}/1.0/auth/time"
            response = await self._client.request("GET", url, step_hosts=context.hosts,
                                                  label="OVH auth/time")
            check_answer(response, label="OVH auth/time", detail=response.text[:200],
                         now_s=context.clock.time())
            try:
                server_s = int(response.text.strip())
            except ValueError:
                raise MalformedResponseError(f"OVH auth/time answered {response.text[:50]!r}, "
                                             "not a number of seconds") from None
            self._time_delta_s = server_s - int(context.clock.time())
        return self._time_delta_s


def _describe(answer: dict[str, Any]) -> str:
    code = answer.get("errorCode") or answer.get("class")
    message = str(answer.get("message", ""))[:300]
    return f"{code}: {message}" if code else message
