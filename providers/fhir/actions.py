"""``patient_alert``: HL7 FHIR R4 ``Communication`` and/or ``Flag`` about a patient,
written to a FHIR server.

Each resource is validated with ``fhir.resources`` before anything is sent, then
created with a conditional create on the step's identifier, so the server itself
keeps a redelivered step from writing a second alert (and the
:class:`~providers.outbox.SentLedger` keeps it from asking). The server's
``OperationOutcome`` is quoted in every error (422 unprocessable, 401/403 auth,
412 conflicting duplicates...).

The read function reports whether this step's resources are on the server and
not retracted (``state.written``); the definition checks it before (not yet
written) and after (written). The rollback is the same capability with ``status:
entered-in-error``: it marks what this step wrote as entered in error, FHIR's way
of withdrawing a resource without deleting its history.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, describe_validation_error
from providers.fhir.params import RETRACTED, PatientAlertParams
from providers.fhir.resources import build_resource, step_identity
from providers.fhir.server import FhirServer, FhirSettings
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, SentLedger

PATIENT_ALERT_ID = "patient_alert"
PATIENT_ALERT_VERSION = "1.0.0"


class FhirActions:
    def __init__(self, settings: FhirSettings, *, client: GuardedClient,
                 secrets: EnvSecrets | None = None, ledger: SentLedger | None = None,
                 policy: CallPolicy | None = None) -> None:
        self._settings = settings
        self._client = client
        self._secrets = secrets or EnvSecrets()
        self._ledger = ledger or SentLedger()
        self._policy = policy or CallPolicy(timeout_s=20.0, max_retries=3, backoff_max_s=60.0)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            PATIENT_ALERT_ID, PATIENT_ALERT_VERSION, self.alert, policy=self._policy,
            description="Write a FHIR R4 Communication and/or Flag about a patient",
            read_state=self.read_written,
            breaker_scope=lambda params: f"fhir:{params.get('baseUrl') or 'default'}")

    def _parsed(self, params: Mapping[str, Any],
                context: CallContext) -> tuple[PatientAlertParams, FhirServer]:
        try:
            call = PatientAlertParams.model_validate(dict(params))
        except ValidationError as exc:
            raise ValueError(f"patient_alert params: {describe_validation_error(exc)}") \
                from None
        base = call.base_url or self._settings.base_url
        if not base:
            raise ValueError("patient_alert: no FHIR server: give params.baseUrl or "
                             "configure FHIR_BASE_URL")
        return call, FhirServer(base, self._client, self._secrets, self._settings, context)

    async def alert(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        call, server = self._parsed(params, context)
        identity = step_identity(context.idempotency_key)
        if call.status == RETRACTED:
            return await _retract(server, call, identity, context)
        now = datetime.fromtimestamp(context.clock.time(), UTC).isoformat(timespec="seconds")
        resources = [build_resource(kind, call, identity, now) for kind in call.resources]

        async def deliver() -> dict[str, Any]:
            written = [await server.create_once(r, identity) for r in resources]
            context.logger.info("patient_alert_written", patient=call.patient,
                                resources=[f"{w['resourceType']}/{w['id']}" for w in written])
            return {"status": "completed", "resources": written}

        return await self._ledger.once(context, deliver)

    async def read_written(self, params: Mapping[str, Any],
                           context: CallContext) -> Mapping[str, Any]:
        call, server = self._parsed(params, context)
        identity = step_identity(context.idempotency_key)
        found: list[dict[str, Any]] = []
        for kind in call.resources:
            found += [{"resourceType": kind, "id": r.get("id"), "status": r.get("status")}
                      for r in await server.find(kind, identity)]
        kinds = {r["resourceType"] for r in found if r["status"] != RETRACTED}
        return {"written": kinds == set(call.resources), "resources": found}


async def _retract(server: FhirServer, call: PatientAlertParams, identity: str,
                   context: CallContext) -> dict[str, Any]:
    retracted: list[str] = []
    for kind in call.resources:
        for resource in await server.find(kind, identity):
            if resource.get("status") != RETRACTED:
                await server.update({**resource, "status": RETRACTED})
                retracted.append(f"{kind}/{resource.get('id')}")
    context.logger.warning("patient_alert_retracted", patient=call.patient, resources=retracted)
    return {"status": RETRACTED, "retracted": retracted}
