"""http-webhook's case for the provider contract: its config errors only. The contract
polls a source against recorded replies; a receiver is called by its senders instead,
and tests/providers/test_webhook_*.py and tests/chaos/test_webhook_*.py check its auth
modes, redeliveries and saved-on-receipt."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = ("a receiver called by its senders, not a polled source: tests/providers/"
       "test_webhook_*.py and tests/chaos/test_webhook_*.py cover it")


class WebhookEvent(BaseModel):
    source: str
    value: Any
    timestamp: str
    nodeId: str
    metadata: dict[str, Any] | None = None


CASES = [
    ProviderCase(
        type_name="http-webhook", signal_model=WebhookEvent,
        provider_config=lambda _url: {"port": 0, "path": "/hooks",
                                      "auth": {"mode": "bearer",
                                               "secrets": {"ci": "webhook-token-value"}}},
        required_fields=["port", "auth"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
