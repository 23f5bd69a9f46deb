"""Every ``opcua-source`` config error is named with its field when the connector is
built (``config check`` and start-up), never at the first connect."""

from __future__ import annotations

from typing import Any

import pytest

from framework.core.errors import ConfigError
from framework.polling import ConnectorConfig, parse_provider_config
from providers.opcua import OpcUaSourceConfig

GOOD = {"endpoint": "opc.tcp://127.0.0.1:4840/fleet", "nodeIds": ["ns=2;s=Temperature"]}


def parse(**provider: Any) -> OpcUaSourceConfig:
    config = ConnectorConfig(name="plant-ua", type="opcua-source",
                             provider_config={**GOOD, **provider})
    return parse_provider_config(OpcUaSourceConfig, config)


@pytest.mark.parametrize(("provider", "message"), [
    ({"endpoint": ""}, "endpoint is required"),
    ({"nodeIds": None}, "nodeIds is required"),
    ({"endpoint": "http://h:4840"}, "the scheme must be opc.tcp://"),
    ({"endpoint": "opc.tcp://h:99999"}, "invalid port"),
    ({"endpoint": "opc.tcp:///x"}, "expected opc.tcp://host[:port][/path]"),
    ({"nodeIds": []}, "providerConfig.nodeIds: List should have at least 1 item"),
    ({"nodeIds": ["ns=2;s=A", "Temperature"]}, "node id 'Temperature' is not an OPC-UA node id"),
    ({"nodeIds": ["ns=2;s=A", "ns=2;s=A"]}, "nodeIds: ns=2;s=A is listed twice"),
    ({"mode": "push"}, "providerConfig.mode: Input should be 'subscription' or 'polling'"),
    ({"mode": "polling", "subscription": {}}, "subscription settings apply to mode subscription"),
    ({"subscription": {"publishingIntervalMs": 1}}, "subscription.publishingIntervalMs"),
    ({"subscription": {"samplingIntervalMs": -1}}, "subscription.samplingIntervalMs"),
    ({"subscription": {"queueSize": 0}}, "subscription.queueSize"),
    ({"subscription": {"queue": 1}}, "subscription.queue: unknown field"),
    ({"password": "x"}, "a password needs a username"),
    ({"username": "u", "password": "x", "passwordFile": __file__}, "give one, not both"),
    ({"username": "u", "passwordFile": "/nonexistent/pw"}, "/nonexistent/pw: no such file"),
    ({"security": {"policy": "Basic128Rsa15"}}, "security.policy: Input should be 'None' or"),
    ({"security": {"policy": "Basic256Sha256", "certificate": __file__}},
     "policy Basic256Sha256 needs privateKey, serverCertificate"),
    ({"security": {"certificate": __file__}}, "certificates are used with policy Basic256Sha256"),
    ({"security": {"policy": "Basic256Sha256", "certificate": "/nonexistent/c.der",
                   "privateKey": __file__, "serverCertificate": __file__}},
     "/nonexistent/c.der: no such file"),
    ({"security": {"mode": "None"}}, "security.mode: Input should be 'Sign' or 'SignAndEncrypt'"),
    ({"maxValueBytes": 0}, "providerConfig.maxValueBytes"),
    ({"maxMessageBytes": 10}, "providerConfig.maxMessageBytes"),
    ({"source": ""}, "providerConfig.source"),
    ({"nodes": ["ns=2;s=A"]}, "providerConfig.nodes: unknown field"),
])
def test_each_config_error_names_its_field(provider: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(**provider)
    assert "opcua-source connector plant-ua" in str(error.value)
    assert message in str(error.value)


def test_credentials_in_the_endpoint_are_refused_without_being_repeated() -> None:
    with pytest.raises(ConfigError, match="credentials go in username/password") as error:
        parse(endpoint="opc.tcp://fleet:hunter2@h:4840")
    assert "hunter2" not in str(error.value)


def test_a_good_config_has_subscription_defaults() -> None:
    settings = parse()
    assert settings.mode == "subscription"
    assert settings.address() == ("127.0.0.1", 4840)
    tuning = settings.subscription_settings
    assert (tuning.publishing_interval_ms, tuning.sampling_interval_ms,
            tuning.queue_size) == (100, 50, 100)
    assert parse(endpoint="opc.tcp://plc.local").address() == ("plc.local", 4840)
