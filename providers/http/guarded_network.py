"""Connections of ``http_call`` / ``webhook_call``: resolved, checked, then pinned.

:class:`GuardedNetwork` is the httpcore network backend under the actions' client.
For each new connection it resolves the host (``getaddrinfo``, off the event loop,
within the connect timeout), checks **every** address against the call's
:class:`~framework.core.HostPolicy` and connects to a checked address itself, so a
second DNS answer (rebinding) can never swap in another target. TLS still names
the host (httpcore passes it to ``start_tls``), so certificates are checked as usual.

The client is built without proxies (the environment's proxy settings are not
read): through a proxy the proxy would resolve the name, and the check would not
be on the address actually reached.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from framework.core import HostPolicy, RefusedTargetError

# (host, port) -> the addresses it resolves to, in the order to try them.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver, asynchronously (a worker thread, as asyncio does)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: HostPolicy, resolve: Resolver) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._checked_addresses(host, port, timeout)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def _checked_addresses(
        self,
        host: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109  # the connect timeout
    ) -> list[str]:
        refusal = self._policy.refuse_name(host, port)
        if refusal is not None:
            raise RefusedTargetError(f"target refused: {refusal}")
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc or 'timed out'}") from None
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        for address in addresses:
            refusal = self._policy.refuse_address(host, port, address)
            if refusal is not None:
                raise RefusedTargetError(f"target refused: {refusal}")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedTargetError(f"target refused: unix socket {path}")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool on :class:`GuardedNetwork`."""

    def __init__(self, policy: HostPolicy, resolve: Resolver) -> None:
        super().__init__(trust_env=False)
        limits = httpx.Limits()
        # httpx takes no network backend: its pool is replaced by one that has ours
        # (the same settings httpx gives a direct, proxy-less pool).
        self._pool = httpcore.AsyncConnectionPool(
            # SSL_CERT_FILE / SSL_CERT_DIR still apply (a private CA); proxies do not.
            ssl_context=httpx.create_ssl_context(trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetwork(policy, resolve),
        )
