"""Every ``amqp-source`` config error is named with its field when the connector is
built, and none repeats the URL's password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.core.errors import ConfigError
from framework.polling import ConnectorConfig, parse_provider_config
from providers.amqp import AmqpSourceConfig

GOOD = {"url": "amqp://fleet:s3cret@rabbit:5672/%2F", "queue": "orders"}


def parse(**provider: Any) -> AmqpSourceConfig:
    config = ConnectorConfig(name="orders", type="amqp-source",
                             provider_config={**GOOD, **provider})
    return parse_provider_config(AmqpSourceConfig, config)


@pytest.mark.parametrize(("provider", "message"), [
    ({"url": ""}, "url is required"),
    ({"queue": ""}, "queue is required"),
    ({"url": "http://fleet:s3cret@rabbit"}, "the scheme must be amqp:// or amqps://"),
    ({"url": "amqp://fleet:s3cret@rabbit:70000/"}, "url: invalid port"),
    ({"url": "amqp://"}, "url: no host"),
    ({"queue": "q" * 256}, "providerConfig.queue"),
    ({"prefetch": 0}, "providerConfig.prefetch"),
    ({"prefetch": 70000}, "providerConfig.prefetch"),
    ({"bindings": [{"exchange": "amq.topic"}]}, "bindings need declare: true"),
    ({"declare": True, "bindings": [{"routingKey": "a"}]}, "bindings.0.exchange"),
    ({"declare": True, "queueType": "stream"}, "providerConfig.queueType"),
    ({"passwordFile": __file__}, "give one, not both"),
    ({"url": "amqp://fleet@rabbit", "passwordFile": "/nonexistent"}, "/nonexistent: no such"),
    ({"tls": {"keyFile": __file__}}, "certFile and keyFile go together"),
    ({"maxDeliveries": -1}, "providerConfig.maxDeliveries"),
    ({"maxMessageBytes": 0}, "providerConfig.maxMessageBytes"),
    ({"prefetchCount": 5}, "providerConfig.prefetchCount: unknown field"),
])
def test_each_config_error_names_its_field(provider: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(**provider)
    assert "amqp-source connector orders" in str(error.value)
    assert message in str(error.value)
    assert "s3cret" not in str(error.value)


def test_defaults_and_what_the_url_gives() -> None:
    settings = parse()
    assert (settings.prefetch, settings.declare, settings.queue_type) == (100, False, "quorum")
    assert (settings.host, settings.uses_tls, settings.url_password) == (
        "rabbit:5672", False, "s3cret")
    assert parse(url="amqps://rabbit").host == "rabbit:5671"
    assert parse(url="amqps://rabbit").uses_tls


def test_a_password_file_is_read_at_each_connect(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("first\n")
    settings = parse(url="amqp://fleet@rabbit", passwordFile=str(secret))
    assert settings.read_password() == "first"
    secret.write_text("rotated")
    assert settings.read_password() == "rotated"
