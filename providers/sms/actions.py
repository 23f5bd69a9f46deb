"""``sms_send``: a text message through Twilio or OVHcloud, chosen by ``provider``.

Twilio takes one recipient per request, so each recipient is recorded in the
:class:`~providers.outbox.SentLedger` as soon as Twilio accepted it (``{key}#{number}``):
a retry after a partial failure, or a redelivery, sends only to those not yet
reached. OVH takes the whole list in one job, recorded under the step's key.
The result: ``{"provider", "messages": [{"to", "id", "status"}], "invalid": [...]}``;
numbers the provider refused as invalid are listed in ``invalid``, which the
definition's postcondition checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, describe_validation_error
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, SentLedger
from providers.sms.ovh import OvhSettings, OvhSms
from providers.sms.params import SmsSendParams
from providers.sms.twilio import TwilioSettings, TwilioSms

SMS_SEND_ID = "sms_send"
SMS_SEND_VERSION = "1.0.0"


@dataclass(frozen=True)
class SmsSettings:
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    ovh: OvhSettings = field(default_factory=OvhSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmsSettings:
        return cls(ovh=OvhSettings(service_name=env.get("OVH_SMS_SERVICE") or None,
                                   api_base=env.get("OVH_API_BASE") or OvhSettings.api_base))


class SmsActions:
    def __init__(self, settings: SmsSettings, *, client: GuardedClient,
                 secrets: EnvSecrets | None = None, ledger: SentLedger | None = None,
                 policy: CallPolicy | None = None) -> None:
        secrets = secrets or EnvSecrets()
        self._twilio = TwilioSms(settings.twilio, client, secrets)
        self._ovh = OvhSms(settings.ovh, client, secrets)
        self._ledger = ledger or SentLedger()
        self._policy = policy or CallPolicy(timeout_s=20.0, max_retries=3, backoff_max_s=60.0)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            SMS_SEND_ID, SMS_SEND_VERSION, self.send, policy=self._policy,
            description="Send an SMS through Twilio or OVHcloud (params.provider)",
            breaker_scope=lambda params: f"sms:{params.get('provider')}")

    async def send(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        try:
            call = SmsSendParams.model_validate(dict(params))
        except ValidationError as exc:
            raise ValueError(f"sms_send params: {describe_validation_error(exc)}") from None
        if call.provider == "ovh":
            async def deliver() -> dict[str, Any]:
                return {"provider": "ovh", **await self._ovh.send(call, context)}

            return await self._ledger.once(context, deliver)
        return await self._send_twilio(call, context)

    async def _send_twilio(self, call: SmsSendParams, context: CallContext) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        for number in call.to:
            key = f"{context.idempotency_key}#{number}"
            sent = await self._ledger.recall(context.redis, key)
            if sent is None:
                sent = await self._twilio.send_one(call, number, context)
                await self._ledger.remember(context.redis, key, sent)
                context.logger.info("sms_sent", provider="twilio", message_id=sent["id"])
            else:
                sent = {**sent, "duplicate": True}
            messages.append(sent)
        return {"provider": "twilio", "messages": messages, "invalid": []}
