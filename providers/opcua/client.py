"""Opening and closing an asyncua client session to one configured endpoint, each
within a total deadline, with the channel security and login of its
:class:`~providers.opcua.config.EndpointConfig`.

Errors name the endpoint and never the password: a server that cannot be reached,
or does not answer in time, is an :class:`OpcUaConnectError` (retryable); one that
refuses the login or the certificates is an :class:`OpcUaRefusedError` (retrying
the same credentials cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from asyncua import Client, ua
from asyncua.crypto import security_policies

from framework.core import PermanentSourceError, TransientSourceError
from providers.opcua.config import EndpointConfig

# asyncua logs every connection problem itself, in plain text, on top of the
# structured events we log: keep the JSON log stream parseable.
for _name in ("asyncua", "asyncua.client", "asyncua.common", "asyncua.uaprotocol"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_REFUSALS = frozenset({
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid, ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateInvalid, ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityPolicyRejected, ua.StatusCodes.BadSecurityModeRejected,
})
# Sessions are closed by us; the server keeps one this long after a crash.
SESSION_TIMEOUT_MS = 30_000


class OpcUaConnectError(TransientSourceError):
    """The server could not be reached or did not answer in time."""


class OpcUaRefusedError(PermanentSourceError):
    """The server refused the login, the certificates or the security policy."""


async def open_client(settings: EndpointConfig, *, timeout_s: float) -> Client:
    """A connected client with an active session, within ``timeout_s`` in all."""
    client = Client(settings.endpoint, timeout=timeout_s, watchdog_intervall=max(timeout_s, 1.0))
    client.session_timeout = SESSION_TIMEOUT_MS
    client.max_messagesize = settings.max_message_bytes
    client.max_chunkcount = max(1, settings.max_message_bytes // 65_536)
    client.application_uri = settings.security.application_uri
    try:
        async with asyncio.timeout(timeout_s):
            await _secure(client, settings)
            if settings.username:
                client.set_user(settings.username)
                password = settings.read_password()
                if password is not None:
                    client.set_password(password)
            await client.connect()
    except TimeoutError:
        await close_client(client, timeout_s=1.0)
        raise OpcUaConnectError(f"opcua server {settings.endpoint}: no session within "
                                f"{timeout_s:g} s") from None
    except ua.UaStatusCodeError as exc:
        await close_client(client, timeout_s=1.0)
        raise _status_error(settings, exc) from None
    except (OSError, ConnectionError, ua.UaError, ValueError) as exc:
        await close_client(client, timeout_s=1.0)
        raise OpcUaConnectError(f"opcua server {settings.endpoint}: cannot connect: "
                                f"{type(exc).__name__}: {exc}") from None
    return client


async def _secure(client: Client, settings: EndpointConfig) -> None:
    security = settings.security
    if security.policy == "None":
        return
    assert security.certificate and security.private_key and security.server_certificate
    await client.set_security(
        security_policies.SecurityPolicyBasic256Sha256,
        certificate=str(security.certificate), private_key=str(security.private_key),
        server_certificate=str(security.server_certificate),
        mode=getattr(ua.MessageSecurityMode, security.mode))


def _status_error(settings: EndpointConfig, exc: ua.UaStatusCodeError) -> Exception:
    status = ua.StatusCode(exc.code)
    message = f"opcua server {settings.endpoint}: session refused: {status.name}"
    if exc.code in _REFUSALS:
        who = f" (user {settings.username})" if settings.username else ""
        return OpcUaRefusedError(message + who)
    return OpcUaConnectError(message)


async def close_client(client: Client, *, timeout_s: float) -> None:
    """Close the session and the socket, at most ``timeout_s`` waiting for the
    server: a server that is gone costs that, then the socket is dropped."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.disconnect()
    except Exception:  # gone or refusing: the socket is dropped below either way
        with contextlib.suppress(Exception):
            client.disconnect_socket()
    # asyncua leaves its watchdog tasks running after a failed disconnect.
    tasks = (client._supervisor_task, client._stale_watchdog_task, client._renew_channel_task)
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running, timeout=1.0)


@contextlib.asynccontextmanager
async def session(settings: EndpointConfig, *, timeout_s: float) -> AsyncIterator[Client]:
    """``async with session(settings, timeout_s=3) as client:`` for one short exchange."""
    client = await open_client(settings, timeout_s=timeout_s)
    try:
        yield client
    finally:
        await close_client(client, timeout_s=min(timeout_s, 2.0))
