"""``alarm_trigger``'s parameters and settings.

A step names devices by id, never a topic or a host: each id is one MQTT topic
level (no ``/``, ``+`` or ``#``), placed under the configured prefix, and the
broker comes from configuration (``ALARM_MQTT_*``). The escalation is bounded:
at most 5 levels of at most 20 devices, each level's acknowledgement wait within
15 minutes and the whole escalation within an hour.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from framework.consuming import describe_validation_error

CAPABILITY = "alarm_trigger"
_TOPIC_LEVEL = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_ESCALATION_MS = 3_600_000
DeviceId = Annotated[str, Field(pattern=_TOPIC_LEVEL)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)


class Level(_Model):
    """Who is alarmed at this level, and how long they have to acknowledge."""

    devices: list[DeviceId] = Field(min_length=1, max_length=20)
    ack_timeout_ms: int = Field(60_000, ge=100, le=900_000)

    @property
    def ack_timeout_s(self) -> float:
        return self.ack_timeout_ms / 1000


class AlarmParams(_Model):
    levels: list[Level] = Field(min_length=1, max_length=5)
    message: str = Field(min_length=1, max_length=1000)
    kind: Literal["clinical", "industrial"] = "industrial"
    severity: Literal["low", "medium", "high", "critical"] = "high"
    source: str | None = Field(None, max_length=200)
    # Default: derived from the step's idempotency key (the same on a redelivery).
    alarm_id: str | None = Field(None, pattern=_TOPIC_LEVEL)
    # "cancel" withdraws the alarm from every device of every level (the rollback).
    operation: Literal["raise", "cancel"] = "raise"

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        total_ms = sum(level.ack_timeout_ms for level in self.levels)
        if total_ms > MAX_ESCALATION_MS:
            raise ValueError(f"the levels' ackTimeoutMs add up to {total_ms} ms; an "
                             f"escalation takes at most {MAX_ESCALATION_MS} ms")
        return self

    def identity(self, idempotency_key: str) -> str:
        if self.alarm_id is not None:
            return self.alarm_id
        return "a" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]

    def devices(self, up_to_level: int | None = None) -> list[str]:
        """Every device of levels 0..``up_to_level`` (all levels by default), once."""
        levels = self.levels if up_to_level is None else self.levels[:up_to_level + 1]
        return list(dict.fromkeys(d for level in levels for d in level.devices))


def parse_params(params: Mapping[str, Any]) -> AlarmParams:
    try:
        return AlarmParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"{CAPABILITY} params: {describe_validation_error(exc)}") from None


@dataclass(frozen=True)
class AlarmSettings:
    """The broker and topic layout, from ``ALARM_MQTT_HOST``, ``ALARM_MQTT_PORT``
    (1883), ``ALARM_MQTT_USERNAME``, ``ALARM_TOPIC_PREFIX`` (``alarms``),
    ``ALARM_MQTT_TIMEOUT_MS`` (5000: connect, subscribe, each publish),
    ``ALARM_MQTT_TLS`` and ``ALARM_MQTT_CA_FILE``; the password is a secret, read at
    each call from ``ALARM_MQTT_PASSWORD``."""

    host: str | None
    port: int = 1883
    username: str | None = None
    topic_prefix: str = "alarms"
    timeout_ms: int = 5000
    password_env: str = "ALARM_MQTT_PASSWORD"
    # TLS (``ALARM_MQTT_TLS=true``), verified against ``ALARM_MQTT_CA_FILE`` or the
    # system's CAs.
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlarmSettings:
        """Never raises: a bad value fails each call, naming it (:meth:`checked`)."""
        def number(name: str, default: int) -> int:
            raw = env.get(name, "")
            return int(raw) if raw.isdigit() else (default if raw == "" else -1)

        return cls(host=env.get("ALARM_MQTT_HOST") or None,
                   port=number("ALARM_MQTT_PORT", 1883),
                   username=env.get("ALARM_MQTT_USERNAME") or None,
                   topic_prefix=env.get("ALARM_TOPIC_PREFIX") or "alarms",
                   timeout_ms=number("ALARM_MQTT_TIMEOUT_MS", 5000),
                   tls=env.get("ALARM_MQTT_TLS", "").lower() in ("1", "true", "yes"),
                   ca_file=env.get("ALARM_MQTT_CA_FILE") or None)

    def checked(self) -> AlarmSettings:
        if self.host is None:
            raise ValueError(f"{CAPABILITY}: no MQTT broker: ALARM_MQTT_HOST is unset")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"{CAPABILITY}: ALARM_MQTT_PORT must be a port (1..65535)")
        if not 100 <= self.timeout_ms <= 60_000:
            raise ValueError(f"{CAPABILITY}: ALARM_MQTT_TIMEOUT_MS must be 100..60000")
        if any(c in self.topic_prefix for c in "+#\x00") or self.topic_prefix.startswith("/"):
            raise ValueError(f"{CAPABILITY}: ALARM_TOPIC_PREFIX {self.topic_prefix!r} must "
                             "not hold wildcards (+ #) nor start with /")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"{CAPABILITY}: ALARM_MQTT_CA_FILE {self.ca_file} is not a file")
        return self

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000

    def alarm_topic(self, device: str) -> str:
        return f"{self.topic_prefix}/devices/{device}/alarm"

    def ack_topic(self, alarm_id: str) -> str:
        return f"{self.topic_prefix}/acks/{alarm_id}"
