"""A FHIR R4 server double on the replay server: create (conditional on
``If-None-Exist``), search by identifier (a ``searchset`` Bundle), read and update
(``If-Match`` on the version), with OperationOutcome errors for a missing or wrong
Bearer token (401), an invalid resource (422), duplicates (412) and outages (503),
and 429 with ``Retry-After``."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import orjson

from framework.testing import RecordedRequest, ReplayServer, Reply

FHIR_TOKEN = "fhir-bearer-token-4321"
FHIR_JSON = "application/fhir+json"


def outcome(status: int, code: str, diagnostics: str, severity: str = "error",
            expression: str | None = None) -> Reply:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return Reply(status, {"resourceType": "OperationOutcome", "issue": [issue]},
                 content_type=FHIR_JSON)


class FhirDouble:
    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.base_url = f"{server.url}/fhir"
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.lose_flags = False  # accept Flags (201) but keep none: a broken server
        self.failing = 0
        self.failing_creates = 0  # searches answered, creates 503
        self.rate_limited = 0  # the next N creates answer 429
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        for kind in ("Communication", "Flag"):
            server.route(f"/fhir/{kind}", self._type_level)

    def resources(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for (k, _), r in self.store.items() if k == kind]

    def _type_level(self, request: RecordedRequest) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        kind = request.path.rsplit("/", 1)[1]
        if request.method == "GET":
            return self._search(kind, request.query.get("identifier", ""))
        return self._create(kind, request)

    def _refused(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            if self.rate_limited and request.method == "POST":
                self.rate_limited -= 1
                return Reply(429, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "throttled",
                     "diagnostics": "Too many requests"}]}, headers={"Retry-After": "0"},
                    content_type=FHIR_JSON)
            if self.failing:
                self.failing -= 1
                return outcome(503, "transient", "The server is down for maintenance")
        auth = request.headers.get("authorization")
        if auth is None:
            return outcome(401, "login", "Authentication required")
        if auth != f"Bearer {FHIR_TOKEN}":
            return outcome(401, "login", "Invalid access token")
        return None

    def _matching(self, kind: str, identifier: str) -> list[dict[str, Any]]:
        system, _, value = identifier.partition("|")
        return [r for (k, _), r in self.store.items() if k == kind and any(
            i.get("system") == system and i.get("value") == value
            for i in r.get("identifier", []))]

    def _search(self, kind: str, identifier: str) -> Reply:
        with self._lock:
            found = self._matching(kind, identifier)
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                           "entry": [{"fullUrl": f"{self.base_url}/{kind}/{r['id']}",
                                      "resource": r, "search": {"mode": "match"}}
                                     for r in found]}, content_type=FHIR_JSON)

    def _create(self, kind: str, request: RecordedRequest) -> Reply:
        with self._lock:
            if self.failing_creates:
                self.failing_creates -= 1
                return outcome(503, "transient", "The server is down for maintenance")
        if request.headers.get("content-type") != FHIR_JSON:
            return outcome(415, "not-supported", "Use application/fhir+json")
        resource = orjson.loads(request.body)
        if resource.get("resourceType") != kind:
            return outcome(400, "invalid", f"Expected a {kind}", expression="resourceType")
        if not resource.get("subject", {}).get("reference", "").startswith("Patient/"):
            return outcome(422, "processing", "Unknown patient", expression=f"{kind}.subject")
        condition = request.headers.get("if-none-exist", "")
        with self._lock:
            if condition.startswith("identifier="):
                existing = self._matching(kind, condition.removeprefix("identifier="))
                if len(existing) > 1:
                    return outcome(412, "duplicate", "Multiple matches for If-None-Exist")
                if existing:
                    return Reply(200, existing[0], content_type=FHIR_JSON)
            resource_id = str(next(self._ids))
            stored = {**resource, "id": resource_id, "meta": {"versionId": "1"}}
            if not (kind == "Flag" and self.lose_flags):
                self.store[(kind, resource_id)] = stored
                self.server.route(f"/fhir/{kind}/{resource_id}", self._instance)
        return Reply(201, stored, content_type=FHIR_JSON, headers={
            "Location": f"{self.base_url}/{kind}/{resource_id}/_history/1"})

    def _instance(self, request: RecordedRequest) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        _, kind, resource_id = request.path.rsplit("/", 2)
        with self._lock:
            current = self.store[(kind, resource_id)]
            if request.method == "GET":
                return Reply(200, current, content_type=FHIR_JSON)
            version = current["meta"]["versionId"]
            if request.headers.get("if-match") not in (None, f'W/"{version}"'):
                return outcome(412, "conflict", f"Version {version} is current")
            updated = orjson.loads(request.body)
            updated["meta"] = {"versionId": str(int(version) + 1)}
            self.store[(kind, resource_id)] = updated
        return Reply(200, updated, content_type=FHIR_JSON)
