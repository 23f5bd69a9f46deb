"""The FHIR REST interactions of ``patient_alert`` on one server, through the guarded
network: conditional create (``POST [base]/{type}`` with ``If-None-Exist``), search by
identifier, and update (``PUT [base]/{type}/{id}`` with ``If-Match`` on the version
read). Bodies are ``application/fhir+json``. A failure quotes the server's
``OperationOutcome`` issues (severity, code, diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from framework.consuming import CallContext
from framework.core import MalformedResponseError
from providers.fhir.resources import identifier_query
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, check_answer, json_object

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class FhirSettings:
    base_url: str | None = None
    # Bearer token (SMART backend services, or a static one); unset: no Authorization.
    token_env: str = "FHIR_TOKEN"


class FhirServer:
    def __init__(self, base_url: str, client: GuardedClient, secrets: EnvSecrets,
                 settings: FhirSettings, context: CallContext) -> None:
        self._base = base_url.rstrip("/")
        self._client = client
        self._secrets = secrets
        self._settings = settings
        self._context = context

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, **extra}
        token = self._secrets.read_optional(self._settings.token_env)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def create_once(self, resource: dict[str, Any], identity: str) -> dict[str, Any]:
        kind = resource["resourceType"]
        response = await self._send(
            "POST", f"{self._base}/{kind}", f"FHIR create {kind}",
            headers=self._headers(**{"Content-Type": FHIR_JSON,
                                     "If-None-Exist": f"identifier={identifier_query(identity)}",
                                     "Prefer": "return=representation"}),
            content=orjson.dumps(resource))
        created = json_object(response)
        location = response.headers.get("Location", "")
        resource_id = created.get("id") or _id_from_location(location, kind)
        if not resource_id:
            raise MalformedResponseError(f"FHIR create {kind} answered {response.status_code} "
                                         "without an id or a Location")
        return {"resourceType": kind, "id": resource_id,
                "created": response.status_code == 201}

    async def find(self, kind: str, identity: str) -> list[dict[str, Any]]:
        """This step's resources of ``kind`` (a searchset Bundle's entries)."""
        response = await self._send(
            "GET", f"{self._base}/{kind}", f"FHIR search {kind}", headers=self._headers(),
            query={"identifier": identifier_query(identity)})
        bundle = json_object(response)
        if bundle.get("resourceType") != "Bundle":
            raise MalformedResponseError(f"FHIR search {kind} answered without a Bundle")
        return [entry["resource"] for entry in bundle.get("entry", [])
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)]

    async def update(self, resource: dict[str, Any]) -> None:
        kind, resource_id = resource["resourceType"], resource["id"]
        extra = {"Content-Type": FHIR_JSON}
        version = resource.get("meta", {}).get("versionId")
        if version:
            extra["If-Match"] = f'W/"{version}"'
        await self._send("PUT", f"{self._base}/{kind}/{quote(resource_id, safe='')}",
                         f"FHIR update {kind}/{resource_id}", headers=self._headers(**extra),
                         content=orjson.dumps(resource))

    async def _send(self, method: str, url: str, label: str, *, headers: dict[str, str],
                    content: bytes | None = None,
                    query: dict[str, str] | None = None) -> httpx.Response:
        response = await self._client.request(method, url, step_hosts=self._context.hosts,
                                              headers=headers, content=content, query=query,
                                              label=label)
        check_answer(response, label=label,
                     detail=self._secrets.redact(describe_outcome(json_object(response))),
                     now_s=self._context.clock.time())
        return response


def describe_outcome(answer: dict[str, Any]) -> str:
    """An OperationOutcome's issues in one line (or the body's message)."""
    if answer.get("resourceType") != "OperationOutcome":
        return str(answer.get("message", ""))[:300]
    issues = []
    for issue in answer.get("issue", [])[:5]:
        if isinstance(issue, dict):
            where = ", ".join(str(e) for e in issue.get("expression", [])[:2])
            text = issue.get("diagnostics") or issue.get("details", {}).get("text", "")
            issues.append(f"{issue.get('severity')} {issue.get('code')}"
                          f"{f' at {where}' if where else ''}: {text}")
    return "OperationOutcome: " + "; ".join(issues)


def _id_from_location(location: str, kind: str) -> str | None:
    # [base]/Communication/123/_history/1
    parts = location.rstrip("/").split("/")
    if kind in parts:
        index = parts.index(kind)
        if index + 1 < len(parts):
            return parts[index + 1]
    return None
