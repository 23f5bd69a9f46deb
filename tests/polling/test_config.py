"""connectors.json and environment mode: the README's examples, ${VAR} substitution,
validation, and errors that name the file, the connector, the field and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from framework.core.errors import ConfigFileError, InvalidEntriesError
from framework.core.redaction import redact
from framework.core.settings import Settings
from framework.polling.config import ConnectorConfig, load_fleet_config

NOAA_EXAMPLE = {
    "name": "weather-noaa", "type": "NOAA_WEATHER", "enabled": True, "pollIntervalMs": 60000,
    "requestTimeoutMs": 10000, "maxRetries": 2, "outputStream": "raw-input-signals",
    "leaseTtlSeconds": 30,
    "retryConfig": {"baseDelayMs": 150, "maxDelayMs": 10000, "jitterRatio": 0.1},
    "providerConfig": {"baseUrl": "https://api.weather.gov", "alertsPath": "/alerts/active",
                       "area": "CA,OR", "severity": "Severe,Extreme"},
}
JIRA_EXAMPLE = {
    "name": "jira-prod", "type": "JIRA", "enabled": True, "pollIntervalMs": 300000,
    "requestTimeoutMs": 15000, "maxRetries": 3,
    "providerConfig": {"baseUrl": "${JIRA_BASE_URL}", "apiToken": "${JIRA_API_TOKEN}",
                       "jql": "project = SEC AND status = Open"},
}
ENVIRONMENT_EXAMPLE = {
    "ENABLED_CONNECTORS": "weather-noaa,jira-prod",
    "CONNECTOR_WEATHER_NOAA_TYPE": "NOAA_WEATHER",
    "CONNECTOR_WEATHER_NOAA_POLL_INTERVAL_MS": "60000",
    "CONNECTOR_WEATHER_NOAA_REQUEST_TIMEOUT_MS": "10000",
    "CONNECTOR_WEATHER_NOAA_MAX_RETRIES": "2",
    "CONNECTOR_WEATHER_NOAA_BASE_URL": "https://api.weather.gov",
    "CONNECTOR_WEATHER_NOAA_ALERTS_PATH": "/alerts/active",
    "CONNECTOR_WEATHER_NOAA_AREA": "CA,OR",
    "CONNECTOR_WEATHER_NOAA_SEVERITY": "Severe,Extreme",
    "CONNECTOR_JIRA_PROD_TYPE": "JIRA",
    "CONNECTOR_JIRA_PROD_BASE_URL": "https://acme.atlassian.net",
    "CONNECTOR_JIRA_PROD_API_TOKEN": "tok-123",
    "CONNECTOR_JIRA_PROD_JQL": "project = SEC",
}


def write(tmp_path: Path, *entries: Any, text: str | None = None) -> Path:
    path = tmp_path / "connectors.json"
    path.write_text(text if text is not None else orjson.dumps(
        {"connectors": list(entries)}).decode())
    return path


def test_the_file_example_loads_with_its_variables(tmp_path: Path) -> None:
    path = write(tmp_path, NOAA_EXAMPLE, JIRA_EXAMPLE)

    fleet = load_fleet_config(path, environ={"JIRA_BASE_URL": "https://acme.atlassian.net",
                                             "JIRA_API_TOKEN": "tok-123"})

    noaa, jira = fleet.connectors["weather-noaa"], fleet.connectors["jira-prod"]
    assert (noaa.poll_interval_ms, noaa.request_timeout_ms, noaa.max_retries) == (60000, 10000, 2)
    assert (noaa.retry_config.base_delay_ms, noaa.retry_config.jitter_ratio) == (150, 0.1)
    assert noaa.provider_config["area"] == "CA,OR"
    assert jira.provider_config["baseUrl"] == "https://acme.atlassian.net"
    assert jira.provider_config["apiToken"] == "tok-123"
    assert (jira.output_stream, jira.lease_ttl_seconds) == ("raw-input-signals", 30)
    assert fleet.source == str(path)


def test_a_missing_variable_stops_only_its_connector_naming_the_variable_and_field(
        tmp_path: Path) -> None:
    path = write(tmp_path, NOAA_EXAMPLE, JIRA_EXAMPLE)

    fleet = load_fleet_config(path, environ={"JIRA_BASE_URL": "https://acme.atlassian.net"})

    assert fleet.broken == {"jira-prod":
        "connector jira-prod: environment variable JIRA_API_TOKEN is required by "
        "providerConfig.apiToken but is not set (set it, or write ${JIRA_API_TOKEN:-default})"}
    assert list(fleet.connectors) == ["weather-noaa"]
    assert [c.name for c in fleet.enabled()] == ["weather-noaa"]


def test_defaults_nested_values_and_escaped_dollars_are_substituted(tmp_path: Path) -> None:
    entry = {"name": "s", "type": "T", "providerConfig": {
        "url": "${HOST:-localhost}:${PORT:-8080}/v1", "headers": {"X-Key": "${KEY}"},
        "list": ["${KEY}", 3], "literal": "$${NOT_A_VARIABLE}", "empty": "${EMPTY:-}"}}

    fleet = load_fleet_config(write(tmp_path, entry), environ={"PORT": "9000", "KEY": "k"})

    assert fleet.connectors["s"].provider_config == {
        "url": "localhost:9000/v1", "headers": {"X-Key": "k"}, "list": ["k", 3],
        "literal": "${NOT_A_VARIABLE}", "empty": ""}


def test_a_disabled_entry_keeps_its_variables_as_written(tmp_path: Path) -> None:
    fleet = load_fleet_config(write(tmp_path, {**JIRA_EXAMPLE, "enabled": False}), environ={})

    assert fleet.connectors["jira-prod"].provider_config["apiToken"] == "${JIRA_API_TOKEN}"
    assert fleet.enabled() == []


def test_the_environment_example_loads_with_camel_case_provider_fields() -> None:
    fleet = load_fleet_config("/nonexistent/connectors.json", environ=ENVIRONMENT_EXAMPLE)

    assert fleet.source == "environment (ENABLED_CONNECTORS)"
    noaa = fleet.connectors["weather-noaa"]
    assert (noaa.type, noaa.poll_interval_ms, noaa.request_timeout_ms, noaa.max_retries) == (
        "NOAA_WEATHER", 60000, 10000, 2)
    assert noaa.provider_config == {"baseUrl": "https://api.weather.gov",
                                    "alertsPath": "/alerts/active", "area": "CA,OR",
                                    "severity": "Severe,Extreme"}
    jira = fleet.connectors["jira-prod"]
    assert jira.provider_config == {"baseUrl": "https://acme.atlassian.net",
                                    "apiToken": "tok-123", "jql": "project = SEC"}


def test_environment_mode_keeps_a_longer_prefix_for_its_own_connector() -> None:
    env = {"ENABLED_CONNECTORS": "weather, weather-noaa",
           "CONNECTOR_WEATHER_TYPE": "A", "CONNECTOR_WEATHER_AREA": "TX",
           "CONNECTOR_WEATHER_NOAA_TYPE": "B", "CONNECTOR_WEATHER_NOAA_AREA": "CA",
           "CONNECTOR_WEATHER_NOAA_RETRY_BASE_DELAY_MS": "500",
           "CONNECTOR_WEATHER_NOAA_ENABLED": "false"}

    fleet = load_fleet_config("unused.json", environ=env)

    assert fleet.connectors["weather"].provider_config == {"area": "TX"}
    noaa = fleet.connectors["weather-noaa"]
    assert noaa.provider_config == {"area": "CA"}
    assert noaa.retry_config.base_delay_ms == 500 and noaa.enabled is False


def test_environment_mode_reports_a_bad_number_with_the_connector_and_field() -> None:
    env = {"ENABLED_CONNECTORS": "weather-noaa", "CONNECTOR_WEATHER_NOAA_TYPE": "NOAA_WEATHER",
           "CONNECTOR_WEATHER_NOAA_POLL_INTERVAL_MS": "every minute"}

    with pytest.raises(InvalidEntriesError, match="connector weather-noaa: pollIntervalMs: "
                                                   "Input should be a valid integer"):
        load_fleet_config("unused.json", environ=env)


def test_invalid_json_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, text='{"connectors": [\n  {"name": "a",}\n]}')

    with pytest.raises(ConfigFileError) as caught:
        load_fleet_config(path, environ={})

    assert str(caught.value).startswith(f"{path}: invalid JSON at line 2, column 16:")


@pytest.mark.parametrize(("text", "message"), [
    ('[{"name": "a"}]', 'expected an object {"connectors": [...]}'),
    ('{"connectors": {"name": "a"}}', 'expected an object {"connectors": [...]}'),
])
def test_a_document_of_the_wrong_shape_says_what_is_expected(
        tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigFileError, match=message.replace("[", r"\[").replace("{", r"\{")):
        load_fleet_config(write(tmp_path, text=text), environ={})


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no such file .set CONNECTORS_CONFIG_PATH"):
        load_fleet_config(tmp_path / "absent.json", environ={})


def test_every_invalid_entry_is_listed_with_connector_field_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"name": "zero", "type": "T", "pollIntervalMs": 0},
        {"name": "jitter", "type": "T", "retryConfig": {"jitterRatio": 1.5}},
        {"name": "delays", "type": "T", "retryConfig": {"baseDelayMs": 500, "maxDelayMs": 100}},
        {"name": "typo", "type": "T", "pollIntervalMS": 1000},
        {"name": "short-lease", "type": "T", "leaseTtlSeconds": 1},
        {"type": "T"},
        {"name": "ok", "type": "T"},
        {"name": "ok", "type": "T"},
        "not an object",
    )

    with pytest.raises(InvalidEntriesError) as caught:
        load_fleet_config(path, environ={})

    assert caught.value.problems == [
        "connector zero: pollIntervalMs: Input should be greater than 0",
        "connector jitter: retryConfig.jitterRatio: Input should be less than or equal to 1",
        "connector delays: retryConfig: Value error, maxDelayMs must be greater than or equal "
        "to baseDelayMs",
        "connector typo: pollIntervalMS: unknown field",
        "connector short-lease: leaseTtlSeconds: Input should be greater than or equal to 2",
        "connectors[5]: name: Field required",
        "connectors[8]: expected an object, got str",
        "connector ok: duplicate connector name 'ok' (connectors[6], connectors[7])",
    ]
    assert str(path) in str(caught.value)
    assert list(caught.value.valid) == []  # neither copy: which one was meant?


def test_a_duplicate_name_is_reported_even_when_a_copy_has_other_errors(
        tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "dup", "type": "T", "pollIntervalMs": 0},
                 {"name": "dup", "type": "T"}, {"name": "dup", "type": "T", "colour": "red"},
                 {"name": "other", "type": "T"})

    with pytest.raises(InvalidEntriesError) as caught:
        load_fleet_config(path, environ={})

    assert caught.value.problems == [
        "connector dup: pollIntervalMs: Input should be greater than 0",
        "connector dup: colour: unknown field",
        "connector dup: duplicate connector name 'dup' (connectors[0], connectors[1], "
        "connectors[2])",
    ]
    assert list(caught.value.valid) == ["other"]


def test_a_duplicate_name_is_reported_when_a_copy_misses_a_variable(tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "dup", "type": "T", "providerConfig": {"k": "${NOPE}"}},
                 {"name": "dup", "type": "T"})

    with pytest.raises(InvalidEntriesError) as caught:
        load_fleet_config(path, environ={})

    assert caught.value.problems == [
        "connector dup: duplicate connector name 'dup' (connectors[0], connectors[1])"]
    assert caught.value.broken == {}


def test_the_documented_defaults() -> None:
    config = ConnectorConfig(name="n", type="T")

    assert (config.output_stream, config.lease_ttl_seconds, config.enabled) == (
        "raw-input-signals", 30, True)
    assert config.retry_config.model_dump() == {
        "base_delay_ms": 150, "max_delay_ms": 10000, "jitter_ratio": 0.1}


def test_secrets_are_redacted_wherever_the_config_is_shown() -> None:
    config = ConnectorConfig(name="jira-prod", type="JIRA", provider_config={
        "baseUrl": "https://user:hunter2@acme.atlassian.net", "apiToken": "tok-123",
        "auth": {"password": "pw", "clientSecret": "cs", "apiKey": "ak", "appKey": "app"},
        "jql": "project = SEC"})

    shown = [str(config.redacted()), repr(config), str(config)]

    for text in shown:
        for secret in ("hunter2", "tok-123", "'pw'", "'cs'", "'ak'", "'app'"):
            assert secret not in text
        assert "project = SEC" in text
    assert config.redacted()["providerConfig"]["apiToken"] == "***"
    assert redact({"token": "t", "list": [{"secret": "x"}]}) == {"token": "***",
                                                                  "list": [{"secret": "***"}]}


def test_process_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6380/2")
    monkeypatch.setenv("CONNECTORS_CONFIG_PATH", "/etc/connectors/connectors.json")
    monkeypatch.setenv("METRICS_PORT", "9464")
    monkeypatch.setenv("LOG_LEVEL", "debug")

    settings = Settings()

    assert settings.redis_url == "redis://redis.internal:6380/2"
    assert settings.connectors_config_path == Path("/etc/connectors/connectors.json")
    assert (settings.metrics_port, settings.log_level) == (9464, "DEBUG")


def test_bad_process_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "70000")

    with pytest.raises(ValueError, match="METRICS_PORT"):
        Settings()
