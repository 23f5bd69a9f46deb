"""``http_call`` and ``webhook_call``: one HTTP request per attempt.

The retries, the timeout and the breaker (per capability and target host) are
:func:`framework.consuming.capabilities.invocation.invoke`'s; a request here only classifies the
answer (:func:`framework.polling.http.raise_for_status`, as the polling connectors do):
2xx/3xx is a result, 408, 429, 5xx and transport errors are retryable
(:class:`~framework.core.errors.TransientSourceError`, with ``Retry-After``), any
other 4xx is not (:class:`~framework.core.errors.PermanentSourceError`). Every
request carries ``Idempotency-Key``: the call's key, the same on every retry
and redelivery, so the target can deduplicate.

Where a call may go is the :class:`~framework.core.HostPolicy` of the capability
(``HttpActions(hosts=...)``) narrowed by the rule step's ``allowHosts``: the URL's
host is checked by name before the request, and every new connection resolves,
checks and pins the address (:mod:`providers.http.guarded_network`). A refusal is a
:class:`~framework.core.RefusedTargetError`: not retried, dead-lettered. Each policy
gets its own connection pool, so a connection opened under one is never reused
under another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, describe_validation_error
from framework.core import HostPolicy
from framework.polling import DEFAULT_MAX_BODY_BYTES, raise_for_status
from providers.http.guarded_client import GuardedClient
from providers.http.guarded_network import Resolver, resolve_host
from providers.http.signature import SIGNATURE_HEADER, sign_body

IDEMPOTENCY_HEADER = "Idempotency-Key"
_TEXT_RESULT_CHARS = 2_000
DEFAULT_SECRET_ENV = "WEBHOOK_SECRET"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HttpCallParams(_Params):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json")
    body: str | None = None


class WebhookCallParams(_Params):
    url: str = Field(pattern=r"^https?://")
    json_body: Any = Field(None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)
    # The secret itself (better: secretEnv, so it never sits in rules.json).
    secret: str | None = Field(None, repr=False)
    secret_env: str = Field(DEFAULT_SECRET_ENV, alias="secretEnv")
    signature_header: str = Field(SIGNATURE_HEADER, alias="signatureHeader")


P = TypeVar("P", bound=_Params)


def _target_host(params: Mapping[str, Any]) -> str | None:
    """``host[:port]`` of the URL: the breaker scope (one per target service)."""
    url = params.get("url")
    if not isinstance(url, str):
        return None
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if not parsed.host:
        return None
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


class HttpActions:
    """The HTTP capabilities over one shared connection pool (``aclose`` it)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None,
                 policy: CallPolicy | None = None, hosts: HostPolicy | None = None,
                 resolve: Resolver = resolve_host,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 client: GuardedClient | None = None) -> None:
        """``transport`` replaces the guarded one (its connections are not checked);
        ``hosts``: the allow-list of every call (None: any public host);
        ``resolve``: the name resolver of the guarded connections;
        ``max_body_bytes``: a target's answer is read up to this size
        (ResponseTooLargeError past it); ``client``: a client shared with other
        actions (then the other arguments but ``policy`` are its own)."""
        self._policy = policy or CallPolicy()
        self.client = client or GuardedClient(hosts=hosts, resolve=resolve,
                                              transport=transport,
                                              max_body_bytes=max_body_bytes)

    async def aclose(self) -> None:
        await self.client.aclose()

    def specs(self) -> list[CapabilitySpec]:
        return [
            CapabilitySpec("http_call", "1.0.0", self.http_call, policy=self._policy,
                           description="HTTP request; result: status and JSON/text body",
                           breaker_scope=_target_host),
            CapabilitySpec("webhook_call", "1.0.0", self.webhook_call, policy=self._policy,
                           description="POST JSON signed with HMAC-SHA256 (X-Signature-256)",
                           breaker_scope=_target_host),
        ]

    async def http_call(self, params: Mapping[str, Any], context: CallContext) -> Any:
        call = _validated(HttpCallParams, params, "http_call")
        headers = {**call.headers, IDEMPOTENCY_HEADER: context.idempotency_key}
        content: bytes | None = None
        if call.json_body is not None:
            content = orjson.dumps(call.json_body)
            headers.setdefault("Content-Type", "application/json")
        elif call.body is not None:
            content = call.body.encode()
        return await self._send(call.method, call.url, headers, content, call.query, context)

    async def webhook_call(self, params: Mapping[str, Any], context: CallContext) -> Any:
        call = _validated(WebhookCallParams, params, "webhook_call")
        secret = call.secret or os.environ.get(call.secret_env)
        if not secret:
            raise ValueError(f"webhook_call: no secret (set params.secret or the environment "
                             f"variable {call.secret_env})")
        body = orjson.dumps(call.json_body)
        headers = {
            **call.headers,
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: context.idempotency_key,
            call.signature_header: sign_body(secret, body),
        }
        return await self._send("POST", call.url, headers, body, {}, context)

    async def _send(self, method: str, url: str, headers: Mapping[str, str],
                    content: bytes | None, query: Mapping[str, Any],
                    context: CallContext) -> dict[str, Any]:
        response = await self.client.request(method, url, step_hosts=context.hosts,
                                             headers=headers, content=content, query=query)
        return _result(response, now_s=context.clock.time())


def _validated(model: type[P], params: Mapping[str, Any], name: str) -> P:
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        # A ValueError: invoke does not retry it (the same parameters fail again).
        raise ValueError(f"{name} params: {describe_validation_error(exc)}") from None


def _result(response: httpx.Response, *, now_s: float) -> dict[str, Any]:
    raise_for_status(response, now_s=now_s)
    result: dict[str, Any] = {"status": response.status_code}
    if "json" in response.headers.get("content-type", ""):
        try:
            result["json"] = response.json()
            return result
        except ValueError:
            pass
    if response.content:
        result["text"] = response.text[:_TEXT_RESULT_CHARS]
    return result

