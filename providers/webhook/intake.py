"""From a received body to a delivery ready to append: parse, check against the
endpoint's contract (a JSON Schema or a pydantic model), build the event.

Every refusal is an :class:`IntakeError` with the HTTP status it is answered with and
the details a caller needs to fix the request (the path of each schema error in the
body); nothing here touches Redis, so a refused body never reaches the stream.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jmespath
import orjson
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from framework import polling
from providers.webhook.config import EventMapping, WebhookConfig, load_contract

# Schema errors listed in a 422 body, at most (a huge bad array must not make a huge answer).
MAX_REPORTED_ERRORS = 20
MAX_DEDUPE_KEY_CHARS = 256


class IntakeError(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"error": self.message}
        if self.details:
            answer["details"] = self.details
        return answer


@dataclass(eq=False)
class Delivery:
    """One message on its way to the stream; ``saved`` resolves True once it is
    appended (or was a redelivery of an appended one), False when it was not kept."""

    item_id: str
    event: dict[str, Any]
    raw: bytes
    dedupe_key: str | None
    saved: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, kept: bool) -> None:
        if not self.saved.done():
            self.saved.set_result(kept)


class Contract:
    """The endpoint's check of a parsed body: a JSON Schema, a pydantic model, or none."""

    def __init__(self, config: WebhookConfig) -> None:
        self._schema = (Draft202012Validator(config.json_schema)
                        if config.json_schema is not None else None)
        self._model: type[BaseModel] | None = (load_contract(config.contract)
                                               if config.contract else None)

    def errors(self, document: Any) -> list[dict[str, str]]:
        if self._schema is not None:
            if self._schema.is_valid(document):  # stops at the first error: cheaper
                return []
            found = sorted(self._schema.iter_errors(document), key=lambda e: list(e.path))
            return [{"path": _pointer(error.absolute_path), "message": error.message}
                    for error in found[:MAX_REPORTED_ERRORS]]
        if self._model is not None:
            try:
                self._model.model_validate(document)
            except ValidationError as exc:
                return [{"path": _pointer(error["loc"]), "message": error["msg"]}
                        for error in exc.errors()[:MAX_REPORTED_ERRORS]]
        return []


def _pointer(path: Any) -> str:
    """A JSON Pointer (RFC 6901) of a location in the body: ``/items/0/id``."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts) if parts else "/"


class _Lookup:
    """A JMESPath expression that is ``@`` or one field name, evaluated without
    JMESPath's per-call visitor (several times slower, run for every request)."""

    def __init__(self, key: str | None) -> None:
        self._key = key

    def search(self, value: Any) -> Any:
        if self._key is None:
            return value
        return value.get(self._key) if isinstance(value, dict) else None


def _compiled(expression: str) -> Any:
    parsed = jmespath.compile(expression)
    node = parsed.parsed
    if node["type"] == "current":
        return _Lookup(None)
    if node["type"] == "field":
        return _Lookup(node["value"])
    return parsed


class EventBuilder:
    """The source event of one body (see :class:`EventMapping`)."""

    def __init__(self, mapping: EventMapping) -> None:
        self._mapping = mapping
        self._value = _compiled(mapping.value_path)
        self._node = _compiled(mapping.node_id_path) if mapping.node_id_path else None
        self._time = _compiled(mapping.timestamp_path) if mapping.timestamp_path else None

    def build(self, document: Any, *, client: str, received_at: datetime,
              delivery_id: str | None) -> dict[str, Any]:
        mapping = self._mapping
        node_id = client
        if self._node is not None:
            found = self._node.search(document)
            if not isinstance(found, str | int) or isinstance(found, bool) or found == "":
                raise IntakeError(422, f"nodeIdPath {mapping.node_id_path!r} found no string "
                                  "or number in the body")
            node_id = str(found)
        received = received_at.isoformat()
        metadata: dict[str, Any] = {"client": client, "receivedAt": received}
        if delivery_id:
            metadata["deliveryId"] = delivery_id
        # framework.polling's function, not its module of the same name (which the
        # import contract forbids outside the side).
        return polling.source_event(
            source=mapping.source, value=self._value.search(document), node_id=node_id,
            timestamp=self._timestamp(document, received), unit=mapping.unit,
            metadata=metadata)

    def _timestamp(self, document: Any, received: str) -> datetime | str:
        if self._time is None:
            return received
        found = self._time.search(document)
        if isinstance(found, str) and found:
            try:
                return datetime.fromisoformat(found)
            except ValueError:
                pass
        elif isinstance(found, int | float) and not isinstance(found, bool):
            try:
                return datetime.fromtimestamp(found, UTC)
            except (OverflowError, OSError, ValueError):
                pass
        raise IntakeError(422, f"timestampPath {self._mapping.timestamp_path!r}: expected an "
                          "ISO-8601 string or Unix seconds in the body")


class Intake:
    """Parse, check and build (see the module docstring)."""

    def __init__(self, config: WebhookConfig) -> None:
        self._contract = Contract(config)
        self._events = EventBuilder(config.event)
        self._id = _compiled(config.idempotency_path) if config.idempotency_path else None

    def delivery(self, body: bytes, *, client: str, dedupe_key: str | None,
                 delivery_id: str | None) -> Delivery:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise IntakeError(400, f"the body is not JSON: {exc}") from None
        errors = self._contract.errors(document)
        if errors:
            raise IntakeError(422, "the body does not match the endpoint's contract", errors)
        event = self._events.build(document, client=client, received_at=datetime.now(UTC),
                                   delivery_id=delivery_id)
        if dedupe_key is None and self._id is not None:
            dedupe_key = dedupe_key_of(client, _key_text(self._id.search(document)))
        item_id = dedupe_key or secrets.token_hex(12)
        return Delivery(item_id=item_id, event=event, raw=body, dedupe_key=dedupe_key)


def _key_text(found: Any) -> str | None:
    """An idempotency key found in the body: a string or a number, else none."""
    if isinstance(found, bool) or not isinstance(found, str | int):
        return None
    return str(found)


def dedupe_key_of(client: str, key: str | None) -> str | None:
    """An Idempotency-Key (or delivery id) scoped to its client: two clients may
    choose the same key without one's event hiding the other's."""
    if not key:
        return None
    if len(key) > MAX_DEDUPE_KEY_CHARS:
        raise IntakeError(400, f"the idempotency key is longer than {MAX_DEDUPE_KEY_CHARS} "
                          "characters")
    return f"{client}:{key}"
