"""One HTTP exchange of an action, through the guarded network.

:class:`GuardedClient` is what every HTTP-speaking action (``http_call``,
``slack_message``, ``sms_send``, ``patient_alert``, ``grist_sync``) sends through:

* the URL's host is checked against the action's :class:`~framework.core.HostPolicy`
  narrowed by the rule step's ``allowHosts`` before any connection (a pooled
  connection skips the connect-time check, so the name is checked on every request);
* every new connection resolves, checks and pins the address
  (:mod:`providers.http.guarded_network`); one connection pool per policy, so a
  connection opened under one policy is never reused under another;
* the answer is read up to ``max_body_bytes``
  (:class:`~framework.core.ResponseTooLargeError` past it);
* a transport failure is a :class:`~framework.core.TransientSourceError` (retried by
  the invoker); a refused target a :class:`~framework.core.RefusedTargetError`.

The total deadline of an exchange is the capability's call timeout
(:func:`framework.consuming.capabilities.invocation.invoke`), so none is kept here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from framework.core import HostPolicy, RefusedTargetError, TransientSourceError, redact_url
from framework.polling import DEFAULT_MAX_BODY_BYTES, read_limited
from providers.http.guarded_network import GuardedTransport, Resolver, resolve_host


class GuardedClient:
    """Connection pools per host policy (``aclose`` it)."""

    def __init__(self, *, hosts: HostPolicy | None = None, resolve: Resolver = resolve_host,
                 transport: httpx.AsyncBaseTransport | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        """``hosts``: the allow-list of every request (None: any public host);
        ``resolve``: the name resolver of the guarded connections; ``transport``
        replaces the guarded one (its connections are not checked)."""
        self._hosts = hosts or HostPolicy()
        self._resolve = resolve
        self._transport = transport
        self.max_body_bytes = max_body_bytes
        self._clients: dict[HostPolicy, httpx.AsyncClient] = {}

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def request(self, method: str, url: str, *, step_hosts: HostPolicy | None,
                      headers: Mapping[str, str] | None = None, content: bytes | None = None,
                      query: Mapping[str, Any] | None = None,
                      label: str | None = None) -> httpx.Response:
        """The answer, its body read; ``step_hosts``: the call's ``allowHosts``
        (``CallContext.hosts``); ``label``: how errors name the target instead of
        the URL (a URL that is itself a credential, such as a Slack webhook's)."""
        hosts = self._hosts.narrowed(step_hosts)
        check_name(hosts, url, label)
        target = label or f"{method} {redact_url(url)}"
        try:
            client = self._client_for(hosts)
            request = client.build_request(method, url, headers=headers, content=content,
                                           params=dict(query) if query else None)
            return await read_limited(await client.send(request, stream=True),
                                      self.max_body_bytes)
        except httpx.TransportError as exc:
            raise TransientSourceError(f"{target} failed: {type(exc).__name__}: {exc}") \
                from None

    def _client_for(self, hosts: HostPolicy) -> httpx.AsyncClient:
        if self._transport is not None:
            hosts = HostPolicy()  # one client: the given transport is closed once
        client = self._clients.get(hosts)
        if client is None:
            transport = self._transport or GuardedTransport(hosts, self._resolve)
            client = self._clients[hosts] = httpx.AsyncClient(
                transport=transport, follow_redirects=False, trust_env=False)
        return client


def check_name(hosts: HostPolicy, url: str, label: str | None = None) -> None:
    """The URL's host against the allow-lists, before any connection."""
    shown = label or f"URL {redact_url(url)}"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid {shown}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid {shown}: an http(s) URL with a host is needed")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    refusal = hosts.refuse_name(parsed.host, port)
    if refusal is not None:
        raise RefusedTargetError(f"target refused: {refusal}")
