"""A Grist double on the replay server: one document's tables behind the records API
(``GET records?filter=``, ``PUT records`` with require/fields and ``onmany``,
``POST data/delete``), a Bearer API key, Grist's ``{"error": ...}`` bodies for an
unknown column (400), a wrong key (401) or document (404), and 429/503."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import orjson

from framework.testing import RecordedRequest, ReplayServer, Reply

GRIST_KEY = "grist-api-key-abcdef"
DOC = "fleetDoc01"
COLUMNS = {"Machine", "Status", "Temperature", "Since"}


class GristDouble:
    def __init__(self, server: ReplayServer, table: str = "Machines") -> None:
        self.server = server
        self.base_url = server.url
        self.table = table
        self.rows: dict[int, dict[str, Any]] = {}
        self.failing = 0
        self.rate_limited = 0  # the next N writes answer 429
        self.ignore_writes = False  # answers 200 to upserts but keeps nothing: broken
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        prefix = f"/api/docs/{DOC}/tables/{table}"
        server.route(f"{prefix}/records", self._records)
        server.route(f"{prefix}/data/delete", self._delete)

    def add(self, fields: dict[str, Any]) -> int:
        with self._lock:
            row_id = next(self._ids)
            self.rows[row_id] = dict(fields)
            return row_id

    def _refused(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            if self.rate_limited and request.method != "GET":
                self.rate_limited -= 1
                return Reply(429, {"error": "Too many requests"}, headers={"Retry-After": "0"})
            if self.failing and request.method != "GET":
                self.failing -= 1
                return Reply(503, {"error": "Service unavailable"})
        if request.headers.get("authorization") != f"Bearer {GRIST_KEY}":
            return Reply(401, {"error": "Bad request: invalid API key"})
        return None

    def _matching(self, require: dict[str, Any]) -> list[int]:
        return [row_id for row_id, fields in sorted(self.rows.items())
                if all(fields.get(k) == v for k, v in require.items())]

    def _records(self, request: RecordedRequest) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            wanted = orjson.loads(request.query.get("filter", "{}"))
            with self._lock:
                rows = [{"id": i, "fields": f} for i, f in sorted(self.rows.items())
                        if all(f.get(k) in values for k, values in wanted.items())]
            return Reply(200, {"records": rows})
        body = orjson.loads(request.body)
        with self._lock:
            for record in body["records"]:
                unknown = sorted((set(record["require"]) | set(record.get("fields", {})))
                                 - COLUMNS)
                if unknown:
                    return Reply(400, {"error": f'Invalid column "{unknown[0]}"'})
                if self.ignore_writes:
                    continue
                matches = self._matching(record["require"])
                if not matches:
                    self.rows[next(self._ids)] = {**record["require"], **record["fields"]}
                    continue
                if request.query.get("onmany") == "none" and len(matches) > 1:
                    continue
                if request.query.get("onmany") != "all":
                    matches = matches[:1]
                for row_id in matches:
                    self.rows[row_id].update(record["fields"])
        return Reply(200, b"null")

    def _delete(self, request: RecordedRequest) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        with self._lock:
            for row_id in orjson.loads(request.body):
                self.rows.pop(row_id, None)
        return Reply(200, b"null")
