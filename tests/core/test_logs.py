"""Structured logs: one JSON object per line, secrets never written."""

from __future__ import annotations

import io
from collections.abc import Iterator

import orjson
import pytest

from framework.core.logs import configure_logging, get_logger
from framework.core.settings import Settings
from framework.polling.config import ConnectorConfig


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    configure_logging("DEBUG")


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_each_event_is_one_json_line_with_the_bound_connector(captured: io.StringIO) -> None:
    get_logger(connector="weather-noaa").info("poll_completed", published=3)

    (event,) = lines(captured)
    assert event["event"] == "poll_completed" and event["connector"] == "weather-noaa"
    assert event["published"] == 3 and event["level"] == "info" and "timestamp" in event


def test_secret_fields_and_url_passwords_are_redacted(captured: io.StringIO) -> None:
    config = ConnectorConfig(
        name="jira-prod", type="JIRA",
        provider_config={"baseUrl": "https://jira.example", "apiToken": "tok-123456",
                         "nested": {"password": "hunter2"}},
    )
    log = get_logger(connector="jira-prod")
    log.info("worker_started", config=config.redacted(), api_key="k-999",
             redis="redis://user:s3cret@redis:6379/0")
    log.info("repr", config=repr(config))

    text = captured.getvalue()
    for secret in ("tok-123456", "hunter2", "k-999", "s3cret"):
        assert secret not in text
    started = lines(captured)[0]
    assert started["config"]["providerConfig"]["baseUrl"] == "https://jira.example"
    assert started["redis"] == "redis://user:***@redis:6379/0"


def test_settings_accept_a_lower_case_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("METRICS_PORT", "9102")
    settings = Settings()
    assert settings.log_level == "DEBUG" and settings.metrics_port == 9102
