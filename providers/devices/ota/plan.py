"""What an OTA rollout is asked to do: which firmware, to which group, with what
canary, soak and failure threshold. Checked when given (CLI, API): each error names
the field."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers.devices.capabilities import FirmwareManifest
from providers.devices.channel_topics import DEVICE_ID

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
DEFAULT_EVENTS_STREAM = "device-events"
# What counts against a device during the soak, in the device events stream.
HEALTH_EVENT_TYPES = ("device.absent", "device.error")


def parse_duration_s(text: str | float) -> float:
    """``4h``, ``30m``, ``90s``, ``250ms``, ``1d`` or a number of seconds."""
    if isinstance(text, int | float):
        return float(text)
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 4h, 30m, 90s)")
    return float(found.group(1)) * _UNITS_S[found.group(2) or "s"]


def parse_percent(text: str | float) -> float:
    """``1%``, ``0.5%`` or a number (a percentage)."""
    if isinstance(text, int | float):
        return float(text)
    found = _PERCENT.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a percentage (e.g. 1%)")
    return float(found.group(1))


class RolloutPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    firmware: FirmwareManifest
    group: str = Field(min_length=1, max_length=128)
    canary_percent: float = Field(1.0, alias="canaryPercent", gt=0, le=100)
    soak_s: float = Field(4 * 3600.0, alias="soakS", ge=0, le=30 * 86400)
    max_failure_percent: float = Field(2.0, alias="maxFailurePercent", ge=0, le=100)
    wave_size: int = Field(1000, alias="waveSize", ge=1, le=1_000_000)
    concurrency: int = Field(200, ge=1, le=10_000)
    device_timeout_s: float = Field(20.0, alias="deviceTimeoutS", gt=0, le=300)
    events_stream: str = Field(DEFAULT_EVENTS_STREAM, alias="eventsStream", min_length=1,
                               max_length=256)

    @field_validator("group")
    @classmethod
    def _group_name(cls, value: str) -> str:
        if DEVICE_ID.fullmatch(value) is None:
            raise ValueError("expected 1-128 letters, digits or '._:@-'")
        return value

    @field_validator("canary_percent", "max_failure_percent", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return parse_percent(value) if isinstance(value, str) else value

    @field_validator("soak_s", "device_timeout_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration_s(value) if isinstance(value, str) else value

    @property
    def version(self) -> str:
        return self.firmware.version

    def canary_count(self, devices: int) -> int:
        """At least one device, never more than the group."""
        return min(devices, max(1, math.ceil(devices * self.canary_percent / 100)))

    def too_many_failures(self, failed: int, total: int) -> bool:
        return total > 0 and failed * 100 > self.max_failure_percent * total
