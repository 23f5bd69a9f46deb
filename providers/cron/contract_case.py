"""cron-trigger's case for the provider contract: its config errors only (a schedule
has no HTTP replies to record; tests/providers/test_cron.py covers its ticks)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = "a schedule, not an HTTP source: tests/providers/test_cron.py covers its ticks"


class CronEvent(BaseModel):
    source: str
    value: Any
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="cron-trigger", signal_model=CronEvent,
        provider_config=lambda _url: {"expression": "*/5 * * * *", "timezone": "Europe/Paris",
                                      "payload": {"job": "report"}},
        required_fields=["expression"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
