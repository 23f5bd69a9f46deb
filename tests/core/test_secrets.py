"""Secrets by origin: every ${VAR} value, redacted wherever it is printed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from framework.core.logs import configure_logging, get_logger
from framework.core.secrets import MIN_SECRET_LENGTH, KnownSecrets, Secrets
from framework.polling.config import load_fleet_config

TOKEN = "tok+en/with space&more"


def test_a_value_is_replaced_as_written_url_encoded_and_json_escaped() -> None:
    secrets = Secrets.of([TOKEN, 'quo"te\\slash'])

    for printed in (TOKEN, "tok%2Ben%2Fwith%20space%26more", "tok%2Ben/with%20space%26more",
                    "tok+en/with%20space&more", "tok%2Ben%2Fwith+space%26more",
                    orjson.dumps('quo"te\\slash').decode()):
        assert secrets.redact_text(f"before {printed} after") in (
            "before *** after", 'before "***" after'), printed


def test_values_too_short_to_redact_safely_are_not_recorded() -> None:
    secrets = Secrets.of(["abc", "on", "abcd"])

    assert secrets.values == frozenset({"abcd"})
    assert MIN_SECRET_LENGTH == 4
    assert secrets.redact_text("abc on abcd") == "abc on ***"


def test_a_secret_containing_another_is_replaced_whole() -> None:
    secrets = Secrets.of(["secret", "secret-and-more"])

    assert secrets.redact_text("x secret-and-more y") == "x *** y"


def test_the_config_records_each_value_a_variable_took_not_defaults(tmp_path: Path) -> None:
    path = tmp_path / "connectors.json"
    path.write_bytes(orjson.dumps({"connectors": [{"name": "s", "type": "T", "providerConfig": {
        "url": "https://h/x?api_token=${TOKEN}", "headers": {"Cookie": "sid=${SID}"},
        "area": "${AREA:-CA,OR}"}}]}))

    fleet = load_fleet_config(path, environ={"TOKEN": TOKEN, "SID": "cookie-value-1"})

    assert fleet.secrets.values == {TOKEN, "cookie-value-1"}
    shown = orjson.dumps(fleet.connectors["s"].redacted(fleet.secrets)).decode()
    assert TOKEN not in shown and "cookie-value-1" not in shown
    assert "api_token=***" in shown and "sid=***" in shown and "CA,OR" in shown


@pytest.fixture
def known() -> Iterator[tuple[KnownSecrets, io.StringIO]]:
    stream, secrets = io.StringIO(), KnownSecrets()
    configure_logging("DEBUG", "json", stream=stream, secrets=secrets)
    yield secrets, stream
    configure_logging("DEBUG")


def test_the_log_renderer_redacts_known_values_in_any_field_message_or_traceback(
    known: tuple[KnownSecrets, io.StringIO],
) -> None:
    secrets, stream = known
    secrets.remember(Secrets.of([TOKEN]))
    log = get_logger(connector="c")
    try:
        raise ValueError(f"bad url https://h/x?api_token={TOKEN}")
    except ValueError as exc:
        log.error("poll_failed", error=str(exc), exc_info=exc, note={"anything": TOKEN})

    text = stream.getvalue()
    assert TOKEN not in text and "tok%2Ben" not in text
    event = orjson.loads(text)
    assert event["error"] == "bad url https://h/x?api_token=***"
    assert event["note"] == {"anything": "***"} and "api_token=***" in event["exception"]
