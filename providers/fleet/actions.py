"""``emit_event`` adds a base event (``base-event/1``) to a stream; ``log`` writes a log line.

Unlike a rule's ``emit`` step (one Lua script with its completion record),
``emit_event`` is a plain call: it stamps the event with the call's
idempotency key as ``event_id``, so consumers of the target stream can
recognise the rare duplicate of a crash between the XADD and the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framework.consuming import (
    BaseEventV1,
    CallContext,
    CallPolicy,
    CapabilitySpec,
    describe_validation_error,
)
from framework.core import DEFAULT_STREAM_MAXLEN


class EmitEventParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    stream: str = Field(min_length=1)
    event: dict[str, Any]
    max_len: int = Field(DEFAULT_STREAM_MAXLEN, gt=0, alias="maxLen")


class LogParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"
    fields: dict[str, Any] = Field(default_factory=dict)


async def emit_event(params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
    try:
        call = EmitEventParams.model_validate(dict(params))
        body = {"event_id": context.idempotency_key, **call.event}
        event = BaseEventV1.model_validate(body, strict=False)
    except ValidationError as exc:
        raise ValueError(f"emit_event params: {describe_validation_error(exc)}") from None
    entry_id = await context.redis.xadd(
        call.stream,
        {"schema": "base-event/1", "event": event.model_dump_json(exclude_none=True)},
        maxlen=call.max_len,
        approximate=True,
    )
    return {"entry_id": entry_id}


async def log_message(params: Mapping[str, Any], context: CallContext) -> None:
    try:
        call = LogParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"log params: {describe_validation_error(exc)}") from None
    log = getattr(context.logger, call.level)
    log(call.message, **call.fields)


def fleet_capabilities() -> list[CapabilitySpec]:
    # Local work: a short timeout, and one retry for a Redis hiccup.
    local = CallPolicy(timeout_s=5.0, max_retries=1)
    return [
        CapabilitySpec("emit_event", "1.0.0", emit_event, policy=local, local=True,
                       description="XADD a base event to a stream"),
        CapabilitySpec("log", "1.0.0", log_message, policy=local, local=True,
                       description="Write a structured log line"),
    ]
