"""``opcua-source`` and ``opcua_write`` over a Basic256Sha256 secure channel (signed
and encrypted) with certificates: the server trusts only the client certificate it
was given, and offers no unsecured endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID
from redis.asyncio import Redis

from framework.consuming.capabilities.spec import CallContext
from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from framework.testing.opcua import OpcUaServer, node_id
from providers.opcua import EndpointConfig, opcua_write_spec
from tests.providers.opcua.conftest import events, opcua_connector, poll_until

pytestmark = pytest.mark.slow


def security(server: OpcUaServer, mode: str = "SignAndEncrypt",
             certificate: Path | None = None) -> dict[str, Any]:
    return {"policy": "Basic256Sha256", "mode": mode,
            "certificate": str(certificate or server.client_certificate),
            "privateKey": str(server.client_key),
            "serverCertificate": str(server.server_certificate)}


@pytest.fixture(scope="module")
def secure_server() -> Any:
    with OpcUaServer(secure=True) as server:
        yield server


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_the_source_reads_over_a_secure_channel(
    redis: Redis, secure_server: OpcUaServer, mode: str,
) -> None:
    connector = await opcua_connector(redis, secure_server, nodeIds=[node_id("Label")],
                                      security=security(secure_server, mode))
    try:
        await poll_until(connector, redis, 1)
    finally:
        await connector.aclose()
    assert [e["value"] for e in await events(redis)] == ["idle"]


async def test_without_security_the_secure_only_server_refuses(
    redis: Redis, secure_server: OpcUaServer,
) -> None:
    connector = await opcua_connector(redis, secure_server, nodeIds=[node_id("Label")])
    try:
        with pytest.raises(Exception, match=rf"opcua server {secure_server.endpoint}: cannot "
                                            r"connect: .*No matching endpoints"):
            await connector.poll()
    finally:
        await connector.aclose()
    assert await redis.xlen("raw-input-signals") == 0


async def test_opcua_write_over_a_secure_channel(
    redis: Redis, secure_server: OpcUaServer,
) -> None:
    settings = EndpointConfig.model_validate({"endpoint": secure_server.endpoint,
                                              "security": security(secure_server)})
    spec = opcua_write_spec({"plc": settings})
    context = CallContext(idempotency_key="k", event={}, redis=redis, clock=SystemClock(),
                          logger=get_logger(test="opcua-secure"))
    call = {"endpoint": "plc", "nodeId": node_id("Level"), "value": 12, "variantType": "Int16"}
    await spec.handler(call, context)
    state = await spec.read_state(call, context)
    assert (state["reachable"], state["matches"]) == (True, True)


async def test_a_client_certificate_the_server_does_not_trust_is_refused(
    redis: Redis, secure_server: OpcUaServer, tmp_path: Path,
) -> None:
    stranger = tmp_path / "stranger.der"
    await setup_self_signed_certificate(
        secure_server.client_key, stranger, "urn:connector-fleet:client", "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "stranger"})
    connector = await opcua_connector(redis, secure_server, nodeIds=[node_id("Label")],
                                      security=security(secure_server, certificate=stranger))
    try:
        with pytest.raises(Exception, match=rf"opcua server {secure_server.endpoint}: session "
                                            r"refused: BadCertificateUntrusted"):
            await connector.poll()
    finally:
        await connector.aclose()
    assert await redis.xlen("raw-input-signals") == 0
