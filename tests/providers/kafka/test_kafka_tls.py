"""kafka-source over TLS with a CA file and a client certificate (mutual TLS), through
a TLS-terminating proxy in front of the broker: the connector's TLS settings are what
make the connection work, and a wrong CA or a missing client certificate fails it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import TransientSourceError
from framework.testing import TansuBroker, free_port
from tests.kafka_peer import create_topic, produce, unique_topic
from tests.providers.kafka.test_kafka_source import kafka_connector, poll_until
from tests.tls_proxy import Pki, TlsProxy, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def tls_kafka(tls_port: int) -> Iterator[TansuBroker]:
    """A broker that tells clients to come back through the TLS port."""
    with TansuBroker(advertised_port=tls_port) as broker:
        yield broker


async def test_records_arrive_over_mutual_tls_with_the_configured_files(
    redis: Redis, pki: Pki, tls_kafka: TansuBroker, tls_port: int,
) -> None:
    topic = unique_topic("tls")
    async with TlsProxy(pki, tls_port, tls_kafka.port, require_client_cert=True):
        tls = {"caFile": str(pki.ca), "certFile": str(pki.client_cert),
               "keyFile": str(pki.client_key)}
        secure = f"127.0.0.1:{tls_port}"
        connector = await kafka_connector(redis, "secure", brokers=[secure], topic=topic,
                                          securityProtocol="SSL", tls=tls)
        client = {"security_protocol": "SSL", "ssl_context": client_context(pki)}
        await create_topic(secure, topic, 1, **client)
        try:
            await connector.poll()  # the start: assigned, nothing yet
            await produce(secure, topic, [b'{"v": 1}', b'{"v": 2}', b'{"v": 3}'], **client)
            await poll_until(connector, redis, 3)
        finally:
            await connector.aclose()
    values = [orjson.loads(f["payload"])["value"]["v"]
              for _, f in await redis.xrange("raw-input-signals")]
    assert values == [1, 2, 3]


def client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


@pytest.mark.parametrize("case", ["unknown CA", "no client certificate"])
async def test_a_wrong_ca_or_a_missing_client_certificate_fails_the_start(
    redis: Redis, pki: Pki, tls_kafka: TansuBroker, tls_port: int, tmp_path: Path,
    case: str,
) -> None:
    other = make_pki(tmp_path) if case == "unknown CA" else pki
    tls: dict[str, str] = {"caFile": str(other.ca)}
    if case == "unknown CA":
        tls |= {"certFile": str(pki.client_cert), "keyFile": str(pki.client_key)}
    async with TlsProxy(pki, tls_port, tls_kafka.port, require_client_cert=True):
        connector = await kafka_connector(redis, "insecure", brokers=[f"127.0.0.1:{tls_port}"],
                                          topic="anything", securityProtocol="SSL", tls=tls)
        with pytest.raises(TransientSourceError, match=f"start on 127.0.0.1:{tls_port} failed"):
            await connector.poll()
        await connector.aclose()
    assert await redis.xlen("raw-input-signals") == 0
