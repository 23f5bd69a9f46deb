"""Every ``mqtt-source`` config error is named with its field, when the connector is
built (``config check`` and start-up), never at the first connect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.core.errors import ConfigError
from framework.polling import ConnectorConfig, load_fleet_config, parse_provider_config
from providers.mqtt import MqttSourceConfig

GOOD = {"broker": "mqtt://127.0.0.1:1883", "topic": "plant/+/temp"}


def parse(**provider: Any) -> MqttSourceConfig:
    config = ConnectorConfig(name="sensors", type="mqtt-source",
                             provider_config={**GOOD, **provider})
    return parse_provider_config(MqttSourceConfig, config)


@pytest.mark.parametrize(("provider", "message"), [
    ({"broker": ""}, "broker is required"),
    ({"topic": None}, "topic is required"),
    ({"broker": "http://h:1"}, "the scheme must be mqtt:// or mqtts://"),
    ({"broker": "mqtt://h:99999"}, "invalid port"),
    ({"broker": "mqtt://h:1/path"}, "expected mqtt[s]://host[:port]"),
    ({"topic": "a/#/b"}, "'#' must be a whole level and the last"),
    ({"topic": ["ok/+", "a/b+"]}, "'+' must be a whole level"),
    ({"topic": []}, "at least one topic filter"),
    ({"topic": ""}, "topic is required"),
    ({"qos": 3}, "providerConfig.qos: Input should be 0, 1 or 2"),
    ({"protocol": "4"}, "providerConfig.protocol: Input should be '3.1.1' or '5'"),
    ({"password": "x"}, "a password needs a username"),
    ({"username": "u", "password": "x", "passwordFile": __file__},
     "give one, not both"),
    ({"username": "u", "passwordFile": "/nonexistent/pw"}, "/nonexistent/pw: no such file"),
    ({"tls": {"certFile": __file__}}, "certFile and keyFile go together"),
    ({"tls": {"caFile": "/nonexistent/ca.crt"}}, "providerConfig.tls.caFile"),
    ({"sessionExpiryS": 0}, "providerConfig.sessionExpiryS"),
    ({"keepaliveS": 1}, "providerConfig.keepaliveS"),
    ({"maxInflight": 0}, "providerConfig.maxInflight"),
    ({"maxMessageBytes": 0}, "providerConfig.maxMessageBytes"),
    ({"clientId": ""}, "providerConfig.clientId"),
    ({"topics": "a"}, "providerConfig.topics: unknown field"),
])
def test_each_config_error_names_its_field(provider: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(**provider)
    assert "mqtt-source connector sensors" in str(error.value)
    assert message in str(error.value)


def test_credentials_in_the_broker_url_are_refused_without_being_repeated() -> None:
    with pytest.raises(ConfigError, match="credentials go in username/password") as error:
        parse(broker="mqtt://fleet:hunter2@h:1883")
    assert "hunter2" not in str(error.value)


def test_defaults_and_the_address_of_each_scheme() -> None:
    settings = parse(broker="broker.local")
    assert settings.address() == ("broker.local", 1883, False)
    assert (settings.qos, settings.protocol, settings.topics) == (1, "5", ["plant/+/temp"])
    assert parse(broker="mqtts://b").address() == ("b", 8883, True)
    assert parse(broker="mqtt://b:1", tls={}).address() == ("b", 1, True)


def test_the_password_comes_from_the_environment_and_is_redacted(tmp_path: Path) -> None:
    path = tmp_path / "connectors.json"
    path.write_text('{"connectors": [{"name": "sensors", "type": "mqtt-source", "providerConfig":'
                    ' {"broker": "mqtt://h", "topic": "t", "username": "u",'
                    ' "password": "${MQTT_PASSWORD}"}}]}')
    fleet = load_fleet_config(path, environ={"MQTT_PASSWORD": "pw-from-env"})
    config = fleet.connectors["sensors"]
    assert parse_provider_config(MqttSourceConfig, config).read_password() == "pw-from-env"
    assert "pw-from-env" not in str(config.redacted(fleet.secrets))
    assert "pw-from-env" not in repr(config)


def test_a_password_file_is_read_at_each_connect(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("first\n")
    settings = parse(username="u", passwordFile=str(secret))
    assert settings.read_password() == "first"
    secret.write_text("rotated\n")
    assert settings.read_password() == "rotated"
    secret.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="larger than 4096 bytes"):
        settings.read_password()
