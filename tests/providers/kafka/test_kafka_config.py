"""Every kafka-source config error is a ConfigError naming the connector, the field
and what is wrong, raised when the connector is built (before any connection)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core import ConfigError, SystemClock
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from providers.builtin import default_registry
from providers.kafka import KafkaSourceConfig

BASE: dict[str, Any] = {"brokers": ["127.0.0.1:9092"], "topic": "orders"}


def build(provider: dict[str, Any]) -> None:
    config = ConnectorConfig(name="orders-kafka", type="kafka-source", provider_config=provider)
    offline = Redis()  # never connects: building a connector does no I/O
    context = ConnectorContext(
        store=StateStore(offline, config, Lease(offline, config.name, ttl_s=10),
                         clock=SystemClock()),
        clock=SystemClock(), logger=get_logger(connector=config.name))
    default_registry().create(config, context)


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("this is not a certificate\n")
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-file\n")
    return {"not_pem": str(not_pem), "secret": str(secret), "missing": str(tmp_path / "nope")}


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no brokers", {"topic": "orders"}, "brokers is required"),
    ("empty brokers", {**BASE, "brokers": []}, "providerConfig.brokers"),
    ("broker without port", {**BASE, "brokers": ["kafka"]}, "'kafka' is not host:port"),
    ("broker port out of range", {**BASE, "brokers": ["kafka:70000"]}, "not host:port"),
    ("neither topic nor topics", {"brokers": ["k:9092"]}, "exactly one of topic and topics"),
    ("topic and topics", {**BASE, "topics": ["a"]}, "exactly one of topic and topics"),
    ("bad topic name", {**BASE, "topic": "or ders"}, "not a Kafka topic name"),
    ("topic listed twice", {"brokers": ["k:9092"], "topics": ["a", "a"]}, "listed twice"),
    ("negative partition", {**BASE, "partitions": [-1]}, "providerConfig.partitions.0"),
    ("partition twice", {**BASE, "partitions": [1, 1]}, "distinct partition numbers"),
    ("bad startFrom", {**BASE, "startFrom": "middle"}, "providerConfig.startFrom"),
    ("bad valueFormat", {**BASE, "valueFormat": "xml"}, "providerConfig.valueFormat"),
    ("zero maxMessageBytes", {**BASE, "maxMessageBytes": 0}, "providerConfig.maxMessageBytes"),
    ("empty groupId", {**BASE, "groupId": ""}, "providerConfig.groupId"),
    ("unknown field", {**BASE, "bootstrap": "x"}, "providerConfig.bootstrap: unknown field"),
    ("bad protocol", {**BASE, "securityProtocol": "TLS"}, "providerConfig.securityProtocol"),
    ("SASL protocol without sasl", {**BASE, "securityProtocol": "SASL_SSL"}, "sasl is required"),
    ("sasl without SASL protocol",
     {**BASE, "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"}},
     "sasl is required with securityProtocol SASL_PLAINTEXT or SASL_SSL, and only then"),
    ("bad mechanism", {**BASE, "securityProtocol": "SASL_PLAINTEXT",
                       "sasl": {"mechanism": "GSSAPI", "username": "u", "password": "p"}},
     "providerConfig.sasl.mechanism"),
    ("no password", {**BASE, "securityProtocol": "SASL_PLAINTEXT",
                     "sasl": {"mechanism": "PLAIN", "username": "u"}},
     "exactly one of password and passwordFile"),
    ("tls with PLAINTEXT", {**BASE, "tls": {}}, "tls needs securityProtocol SSL or SASL_SSL"),
    ("cert without key", {**BASE, "securityProtocol": "SSL", "tls": {"certFile": __file__}},
     "certFile and keyFile go together"),
]


@pytest.mark.parametrize(("provider", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_bad_provider_config_is_named(provider: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        build(provider)
    assert "kafka-source connector orders-kafka" in str(error.value)
    assert expected in str(error.value)


def test_files_that_are_missing_or_not_pem_are_config_errors(pem_files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"providerConfig.tls.caFile: .*nope: no such file"):
        build({**BASE, "securityProtocol": "SSL", "tls": {"caFile": pem_files["missing"]}})
    with pytest.raises(ConfigError, match=r"passwordFile: .*nope: no such file"):
        build({**BASE, "securityProtocol": "SASL_PLAINTEXT", "sasl": {
            "mechanism": "PLAIN", "username": "u", "passwordFile": pem_files["missing"]}})
    with pytest.raises(ConfigError, match="tls: the CA, certificate or key cannot be used"):
        build({**BASE, "securityProtocol": "SSL", "tls": {"caFile": pem_files["not_pem"]}})


def test_a_password_never_shows_in_an_error_or_a_repr(pem_files: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as error:
        build({**BASE, "securityProtocol": "SASL_PLAINTEXT", "sasl": {
            "mechanism": "PLAIN", "username": "u", "password": "hunter2-secret",
            "passwordFile": pem_files["secret"]}})
    assert "hunter2-secret" not in str(error.value)
    settings = KafkaSourceConfig.model_validate({**BASE, "securityProtocol": "SASL_PLAINTEXT",
                                                 "sasl": {"mechanism": "SCRAM-SHA-256",
                                                          "username": "u",
                                                          "password": "hunter2-secret"}})
    assert "hunter2-secret" not in repr(settings)
    assert settings.client_options()["sasl_plain_password"] == "hunter2-secret"


def test_environment_mode_lists_and_a_password_file_are_read(pem_files: dict[str, str]) -> None:
    settings = KafkaSourceConfig.model_validate({
        "brokers": "k1:9092, k2:9092", "topics": "a,b", "partitions": "0,2",
        "securityProtocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "PLAIN", "username": "u", "passwordFile": pem_files["secret"]}})
    assert settings.brokers == ["k1:9092", "k2:9092"]
    assert settings.topic_names == ["a", "b"]
    assert settings.partitions == [0, 2]
    assert settings.client_options()["sasl_plain_password"] == "s3cret-from-file"
