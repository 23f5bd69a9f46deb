"""Parameters of the device capabilities beyond firmware and reboot (and of
``gpio_write``). Every model forbids unknown names, bounds every size (a config,
a schedule, a monitor: at most 64 keys, 16 KiB as JSON) and names the parameter
at fault (:func:`~providers.devices.capabilities.params.parse_params`)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from providers.devices.capabilities.params import DeviceId

MAX_OBJECT_KEYS, MAX_OBJECT_BYTES = 64, 16 * 1024
STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
GPIO_CHIP = r"^gpiochip[0-9]{1,3}$"


def _small_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_OBJECT_KEYS:
        raise ValueError(f"expected at most {MAX_OBJECT_KEYS} keys, got {len(value)}")
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_OBJECT_BYTES:
        raise ValueError(f"expected at most {MAX_OBJECT_BYTES} bytes as JSON, got {size}")
    return value


SmallObject = Annotated[dict[str, Any], AfterValidator(_small_object)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    device_id: DeviceId = Field(alias="deviceId")
    timeout_s: float = Field(20.0, alias="timeoutS", gt=0, le=300)


class ConfigUpdateParams(_Params):
    """``config`` merged into the device's (``replace``: instead of it; a rollback
    replaces with the whole previous config)."""

    config: SmallObject
    replace: bool = False

    @model_validator(mode="after")
    def _something(self) -> ConfigUpdateParams:
        if not self.config and not self.replace:
            raise ValueError("config: an empty config changes nothing (only a replace may "
                             "be empty)")
        return self


class SelfTestParams(_Params):
    pass


class KeyRotationParams(_Params):
    """``keyId``: the key the device should sign with now: a new one is made on the
    device, or the previous one comes back (the rollback)."""

    key_id: str = Field(alias="keyId", pattern=r"^[A-Za-z0-9._:-]{1,64}$")


class SleepWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    sleep_at: str = Field(alias="sleepAt", pattern=HHMM)
    wake_at: str = Field(alias="wakeAt", pattern=HHMM)
    timezone: str = Field("UTC", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _not_empty(self) -> SleepWindow:
        if self.sleep_at == self.wake_at:
            raise ValueError("sleepAt and wakeAt are equal: the device would never sleep")
        return self


class SleepScheduleParams(_Params):
    """``schedule``: when the device sleeps each day; null clears it."""

    schedule: SleepWindow | None

    def command(self) -> dict[str, Any]:
        return {"schedule": None if self.schedule is None
                else self.schedule.model_dump(by_alias=True)}


class Monitor(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    metric: str = Field(min_length=1, max_length=64)
    above: float | None = None
    below: float | None = None
    hysteresis: float = Field(0.0, ge=0)
    priority: Literal["low", "normal", "high", "critical"] = "normal"

    @model_validator(mode="after")
    def _a_bound(self) -> Monitor:
        if self.above is None and self.below is None:
            raise ValueError("a monitor needs 'above', 'below' or both")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError("'below' must be lower than 'above'")
        return self


class ThresholdMonitorParams(_Params):
    """``monitor`` installed on the device under ``monitorId``; null removes it."""

    monitor_id: str = Field(alias="monitorId", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    monitor: Monitor | None

    def command(self) -> dict[str, Any]:
        return {"monitorId": self.monitor_id, "monitor": None if self.monitor is None
                else self.monitor.model_dump(by_alias=True)}


class TelemetryCollectParams(_Params):
    """The device's readings in ``stream`` over the last ``windowS`` seconds (at most
    ``maxReadings``), and one fresh reading asked of the device."""

    window_s: float = Field(3600.0, alias="windowS", gt=0, le=7 * 86400)
    stream: str = Field("raw-input-signals", pattern=STREAM_NAME.pattern)
    max_readings: int = Field(1000, alias="maxReadings", ge=1, le=10_000)


class CompressUploadParams(_Params):
    """The device's buffered readings, gzip-compressed, PUT to ``url`` (its host
    checked against the step's ``allowHosts``); at most ``maxBytes`` compressed."""

    url: str = Field(min_length=8, max_length=2048)
    max_bytes: int = Field(128 * 1024, alias="maxBytes", ge=1, le=160 * 1024)


class TopologyMapParams(_Params):
    """The mesh as seen from ``deviceId``: each device's neighbours, breadth first,
    at most ``maxDevices`` devices and ``maxDepth`` hops; ``timeoutS`` per device."""

    timeout_s: float = Field(5.0, alias="timeoutS", gt=0, le=60)
    max_devices: int = Field(100, alias="maxDevices", ge=1, le=1000)
    max_depth: int = Field(4, alias="maxDepth", ge=1, le=16)


class GpioWriteParams(BaseModel):
    """``target: "remote"``: line ``line`` of device ``deviceId`` over the command
    channel; ``"local"``: line ``line`` of ``/dev/{chip}`` on this host (the chip must
    be one the process allows, ``GPIO_ALLOWED_CHIPS``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    target: Literal["local", "remote"] = "remote"
    device_id: DeviceId | None = Field(None, alias="deviceId")
    chip: str | None = Field(None, pattern=GPIO_CHIP)
    line: int = Field(ge=0, le=1023)
    value: Literal[0, 1]
    timeout_s: float = Field(10.0, alias="timeoutS", gt=0, le=60)

    @model_validator(mode="after")
    def _where(self) -> GpioWriteParams:
        if self.target == "remote" and self.device_id is None:
            raise ValueError("deviceId: required when target is 'remote'")
        if self.target == "local" and self.chip is None:
            raise ValueError("chip: required when target is 'local' (e.g. 'gpiochip0')")
        return self
