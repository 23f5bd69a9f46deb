"""The device capabilities' parameters. ``deviceId`` becomes one MQTT topic level:
it is checked like the channel checks it (no ``/``, no wildcard), so event data
cannot address a topic outside ``devices/{id}/``."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from framework.consuming import describe_validation_error
from providers.devices.capabilities.manifest import FirmwareManifest
from providers.devices.channel_topics import DEVICE_ID


def _device_id(value: str) -> str:
    if DEVICE_ID.fullmatch(value) is None:
        raise ValueError("expected 1-128 letters, digits or '._:@-' (one MQTT topic level)")
    return value


DeviceId = Annotated[str, AfterValidator(_device_id)]
P = TypeVar("P", bound=BaseModel)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    device_id: DeviceId = Field(alias="deviceId")
    # How long the device has to answer the command (the postconditions have their own).
    timeout_s: float = Field(20.0, alias="timeoutS", gt=0, le=300)


class FirmwareUpdateParams(_Params):
    """``version``: what to install; ``manifest``: its signed manifest. A rollback
    (``{"version": "previous"}`` in the definition) names the version the device ran
    before, which it still holds (A/B slots): no manifest is needed for it."""

    version: str = Field(min_length=1, max_length=64)
    manifest: FirmwareManifest | None = None


class RebootParams(_Params):
    pass


def parse_params(model: type[P], capability: str, params: Any) -> P:
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"{capability} params: {describe_validation_error(exc)}") from None
    except (TypeError, ValueError):
        raise ValueError(f"{capability} params: expected an object") from None
