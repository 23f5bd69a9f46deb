"""``sms_send``'s parameters: the provider, the recipients (E.164), the text and the
sender. Credentials are never parameters: each provider reads its own from the
environment (:mod:`providers.sms.twilio`, :mod:`providers.sms.ovh`)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# An alphanumeric sender id: up to 11 letters, digits or spaces, not only digits.
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MAX_RECIPIENTS = 50
# Twilio's limit for one message body (longer bodies are refused, code 21617).
MAX_BODY_CHARS = 1600


def check_number(value: str) -> str:
    if not _E164.match(value):
        raise ValueError(f"{value!r} is not an E.164 phone number (+33601020304)")
    return value


class SmsSendParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: Literal["twilio", "ovh"]
    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    # A number or an alphanumeric sender id; Twilio may use messagingServiceSid
    # instead, OVH its account's default sender when neither is given.
    sender: str | None = Field(None, alias="from")
    messaging_service_sid: str | None = Field(None, alias="messagingServiceSid",
                                              pattern=r"^MG[0-9a-f]{32}$")
    # OVH's SMS account (sms-ab12345-1); None: the configured OVH_SMS_SERVICE.
    service_name: str | None = Field(None, alias="serviceName",
                                     pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    @field_validator("to")
    @classmethod
    def _numbers(cls, value: list[str]) -> list[str]:
        for index, number in enumerate(value):
            try:
                check_number(number)
            except ValueError as exc:
                raise ValueError(f"[{index}]: {exc}") from None
        if len(set(value)) != len(value):
            raise ValueError("a recipient is listed twice")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not (_E164.match(value) or _ALPHANUMERIC_SENDER.match(value)):
            raise ValueError(f"{value!r} is neither an E.164 number nor an alphanumeric "
                             "sender id (up to 11 letters and digits)")
        return value

    @model_validator(mode="after")
    def _provider_fields(self) -> Self:
        if self.provider == "twilio":
            if self.service_name is not None:
                raise ValueError("serviceName is for provider ovh")
            if (self.sender is None) == (self.messaging_service_sid is None):
                raise ValueError("provider twilio needs exactly one of from, "
                                 "messagingServiceSid")
        if self.provider == "ovh" and self.messaging_service_sid is not None:
            raise ValueError("messagingServiceSid is for provider twilio")
        return self
