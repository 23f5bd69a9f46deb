"""``grist_sync``: keep a Grist table in step with a stream of record changes.

An upsert is Grist's ``PUT /api/docs/{docId}/tables/{tableId}/records`` with
``{"records": [{"require": {...}, "fields": {...}}]}``: the row matching ``require``
is updated, or added when none does. ``fields: null`` removes the matching rows
(``POST .../data/delete`` with their ids). The API key (``GRIST_API_KEY``) goes as a
Bearer token; Grist's error body (``{"error": ...}``) is quoted; 429 and 5xx are
retried after their ``Retry-After``.

The read function reads the row ``require`` matches (``GET .../records?filter=``):
``{"exists", "id", "fields"}`` with the step's columns only. The definition checks
it after the call (the row holds the values) and rolls back with
``{"fields": "previous"}``: the columns' values before the step, or no row if there
was none. An upsert is recorded in the :class:`~providers.outbox.SentLedger`, so a
late redelivery cannot put an old value back over a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from pydantic import ValidationError

from framework.consuming import (
    CallContext,
    CallPolicy,
    CapabilitySpec,
    ResourcePolicy,
    describe_validation_error,
)
from framework.core import MalformedResponseError
from providers.grist.params import GristSyncParams
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, SentLedger, check_answer, json_object

GRIST_SYNC_ID = "grist_sync"
GRIST_SYNC_VERSION = "1.0.0"
# One write to a table at a time: the read-back and the rollback of one change must
# not see (or undo) another's. The order of changes is the stream's only with one
# entry in flight (docs/actions.md).
GRIST_TABLE_RESOURCE = ResourcePolicy("grist:{docId}/{table}")


@dataclass(frozen=True)
class GristSettings:
    base_url: str | None = None
    api_key_env: str = "GRIST_API_KEY"


class GristActions:
    def __init__(self, settings: GristSettings, *, client: GuardedClient,
                 secrets: EnvSecrets | None = None, ledger: SentLedger | None = None,
                 policy: CallPolicy | None = None) -> None:
        self._settings = settings
        self._client = client
        self._secrets = secrets or EnvSecrets()
        self._ledger = ledger or SentLedger()
        self._policy = policy or CallPolicy(timeout_s=20.0, max_retries=3, backoff_max_s=60.0)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            GRIST_SYNC_ID, GRIST_SYNC_VERSION, self.sync, policy=self._policy,
            description="Upsert (or remove) one row of a Grist table",
            read_state=self.read_row, resource=GRIST_TABLE_RESOURCE,
            breaker_scope=lambda params: f"grist:{params.get('docId')}")

    async def sync(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        call = _parsed(params)
        if call.fields is None:
            return await self._remove(call, context)

        async def deliver() -> dict[str, Any]:
            body = {"records": [{"require": call.require, "fields": call.fields}]}
            query = {"onmany": call.on_many, "noparse": str(call.no_parse).lower()}
            await self._request(call, context, "PUT", "records", f"Grist upsert {call.table}",
                                content=orjson.dumps(body), query=query)
            context.logger.info("grist_row_synced", doc=call.doc_id, table=call.table)
            return {"upserted": True, "table": call.table, "require": call.require}

        return await self._ledger.once(context, deliver)

    async def read_row(self, params: Mapping[str, Any],
                       context: CallContext) -> Mapping[str, Any]:
        call = _parsed(params)
        rows = await self._matching(call, context)
        if not rows:
            return {"exists": False, "id": None, "fields": None}
        row = rows[0]
        fields = row.get("fields", {})
        columns = call.fields or {}
        return {"exists": True, "id": row.get("id"),
                "fields": {column: fields.get(column) for column in columns}}

    async def _remove(self, call: GristSyncParams, context: CallContext) -> dict[str, Any]:
        ids = [row["id"] for row in await self._matching(call, context)]
        if ids:
            await self._request(call, context, "POST", "data/delete",
                                f"Grist remove from {call.table}", content=orjson.dumps(ids))
        context.logger.info("grist_row_removed", doc=call.doc_id, table=call.table, rows=ids)
        return {"removed": ids, "table": call.table, "duplicate": False}

    async def _matching(self, call: GristSyncParams,
                        context: CallContext) -> list[dict[str, Any]]:
        query = {"filter": orjson.dumps({k: [v] for k, v in call.require.items()}).decode()}
        answer = await self._request(call, context, "GET", "records",
                                     f"Grist read {call.table}", query=query)
        records = answer.get("records")
        if not isinstance(records, list):
            raise MalformedResponseError(f"Grist read {call.table} answered without records")
        return [r for r in records if isinstance(r, dict) and "id" in r]

    async def _request(self, call: GristSyncParams, context: CallContext, method: str,
                       path: str, label: str, *, content: bytes | None = None,
                       query: dict[str, str] | None = None) -> dict[str, Any]:
        base = call.base_url or self._settings.base_url
        if not base:
            raise ValueError("grist_sync: no Grist server: give params.baseUrl or configure "
                             "GRIST_BASE_URL")
        key = self._secrets.read(self._settings.api_key_env, capability=GRIST_SYNC_ID,
                                 what="Grist API key")
        url = (f"{base.rstrip('/')}/api/docs/{quote(call.doc_id, safe='')}/tables/"
               f"{quote(call.table, safe='')}/{path}")
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        response = await self._client.request(method, url, step_hosts=context.hosts,
                                              headers=headers, content=content, query=query,
                                              label=label)
        answer = json_object(response)
        check_answer(response, label=label,
                     detail=self._secrets.redact(str(answer.get("error") or
                                                     answer.get("message", ""))[:300]),
                     now_s=context.clock.time())
        return answer


def _parsed(params: Mapping[str, Any]) -> GristSyncParams:
    try:
        return GristSyncParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"grist_sync params: {describe_validation_error(exc)}") from None
