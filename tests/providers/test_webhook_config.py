"""Every http-webhook config error is found when the config is read (as ``config
check`` does: the factory built against a Redis that is never contacted), named by
field, and never shows a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.polling import ConnectorConfig, ConnectorRegistry, FleetConfig
from providers.builtin import register_builtin_connectors

KEYS = {"mode": "apiKey", "secrets": {"a": "secret-key-0123"}}


async def problems(provider: dict[str, Any]) -> list[str]:
    registry = ConnectorRegistry()
    register_builtin_connectors(registry)
    config = ConnectorConfig(name="hooks", type="http-webhook", provider_config=provider)
    return await registry.validate(FleetConfig(connectors={"hooks": config}, source="test"))


async def test_a_valid_config_has_no_problem() -> None:
    assert await problems({"port": 8080, "auth": KEYS, "websocketPath": "/ws",
                           "schema": {"type": "object"}, "rateLimit": {"requests": 10}}) == []


@pytest.mark.parametrize(("provider", "expected"), [
    ({"auth": KEYS}, "port is required"),
    ({"port": 70000, "auth": KEYS}, "providerConfig.port: Input should be less than or equal"),
    ({"port": 80}, "auth is required"),
    ({"port": 80, "auth": {"mode": "basic"}}, "providerConfig.auth: Input tag 'basic' found "
     "using 'mode' does not match any of the expected tags"),
    ({"port": 80, "auth": {"mode": "apiKey"}}, "secrets or secretsFile is required"),
    ({"port": 80, "auth": {"mode": "bearer", "secrets": {"a": ""}}},
     "every client id and key must be non-empty"),
    ({"port": 80, "auth": {"mode": "hmac", "secrets": {"a": "k-0123"}, "replayWindowS": 0}},
     "providerConfig.auth.hmac.replayWindowS: Input should be greater than 0"),
    ({"port": 80, "auth": KEYS, "path": "no-slash"}, "providerConfig.path: String should match"),
    ({"port": 80, "auth": KEYS, "method": "GET"}, "providerConfig.method: Input should be"),
    ({"port": 80, "auth": KEYS, "schema": {"type": "integer", "minimum": "zero"}},
     "not a valid JSON Schema at minimum: 'zero' is not of type 'number'"),
    ({"port": 80, "auth": KEYS, "contract": "tests.nowhere:Model"},
     "contract 'tests.nowhere:Model' cannot be loaded"),
    ({"port": 80, "auth": KEYS, "contract": "json:loads"}, "is not a pydantic model"),
    ({"port": 80, "auth": KEYS, "schema": {}, "contract": "tests.providers.webhook_contract:"
      "Reading"}, "give schema or contract, not both"),
    ({"port": 80, "auth": KEYS, "event": {"nodeIdPath": "a[?"}},
     "providerConfig.event.nodeIdPath: Value error, invalid JMESPath expression 'a[?'"),
    ({"port": 80, "auth": {"mode": "githubHmac", "secrets": {"gh": "k-0123"}},
      "websocketPath": "/ws"}, "websocketPath needs auth mode apiKey, bearer or none"),
    ({"port": 80, "auth": KEYS, "websocketPath": "/webhook"}, "websocketPath must differ"),
    ({"port": 80, "auth": KEYS, "rateLimit": {"requests": 0}},
     "providerConfig.rateLimit.requests: Input should be greater than 0"),
    ({"port": 80, "auth": KEYS, "surprise": 1}, "providerConfig.surprise: unknown field"),
])
async def test_each_config_error_names_its_field(provider: dict[str, Any], expected: str) -> None:
    [problem] = await problems(provider)
    assert problem.startswith("http-webhook connector hooks: ")
    assert expected in problem
    assert "secret-key-0123" not in problem


async def test_a_secrets_file_that_is_missing_or_malformed_is_a_config_error(
    tmp_path: Path,
) -> None:
    missing = await problems({"port": 80, "auth": {"mode": "bearer",
                                                   "secretsFile": str(tmp_path / "none")}})
    bad = tmp_path / "keys"
    bad.write_text("ok:key-0123\nsecret-without-client\n")
    malformed = await problems({"port": 80, "auth": {"mode": "bearer", "secretsFile": str(bad)}})

    assert missing == [f"http-webhook connector hooks: auth.secretsFile "
                       f"{tmp_path / 'none'}: No such file or directory"]
    assert malformed == [f"http-webhook connector hooks: auth.secretsFile "
                         f"{bad}: {bad}:2: expected 'client-id:key'"]
    assert "secret-without-client" not in malformed[0]


def test_keys_written_in_the_file_are_redacted_when_the_config_prints() -> None:
    config = ConnectorConfig(name="hooks", type="http-webhook", provider_config={
        "port": 80, "auth": {"mode": "apiKey", "secrets": {"a": "literal-key-0123"}}})

    assert "literal-key-0123" not in repr(config)
    assert "literal-key-0123" not in str(config.redacted())
