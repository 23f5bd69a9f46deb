"""The FHIR R4 resources of one alert, built and validated with ``fhir.resources``
(its R4B models: Communication and Flag are the same in R4 and R4B) before any
request. Each carries the identifier ``urn:connector-fleet:step|<step identity>``,
which makes the create conditional (``If-None-Exist``) and lets the rollback and
the read-back find what this step wrote."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.flag import Flag
from pydantic import ValidationError

from framework.consuming import describe_validation_error
from providers.fhir.params import PatientAlertParams

STEP_IDENTIFIER_SYSTEM = "urn:connector-fleet:step"
_ROLLBACK_SUFFIX = ":rollback"


def step_identity(idempotency_key: str) -> str:
    """The step's identity: a rollback call's key is the step's plus ``:rollback``."""
    return idempotency_key.removesuffix(_ROLLBACK_SUFFIX)


def identifier_query(identity: str) -> str:
    return f"{STEP_IDENTIFIER_SYSTEM}|{identity}"


def build_resource(kind: str, call: PatientAlertParams, identity: str,
                   now_iso: str) -> dict[str, Any]:
    """The resource as JSON, validated; ValueError naming the field otherwise."""
    identifier = [{"system": STEP_IDENTIFIER_SYSTEM, "value": identity}]
    if kind == "Communication":
        document: dict[str, Any] = {
            "resourceType": "Communication", "identifier": identifier, "status": "completed",
            "priority": call.priority, "subject": {"reference": call.patient},
            "sent": now_iso, "payload": [{"contentString": call.message}]}
        if call.category is not None:
            document["category"] = [{"text": call.category}]
        if call.sender is not None:
            document["sender"] = {"reference": call.sender}
        model: Any = Communication
    else:
        document = {
            "resourceType": "Flag", "identifier": identifier, "status": "active",
            "code": {"text": call.flag_code}, "subject": {"reference": call.patient},
            "period": {"start": now_iso}}
        if call.category is not None:
            document["category"] = [{"text": call.category}]
        if call.sender is not None:
            document["author"] = {"reference": call.sender}
        model = Flag
    try:
        validated = model.model_validate(document)
    except ValidationError as exc:
        raise ValueError(f"patient_alert: the {kind} is not valid FHIR: "
                         f"{describe_validation_error(exc)}") from None
    result: dict[str, Any] = validated.model_dump(mode="json", exclude_none=True)
    return result
