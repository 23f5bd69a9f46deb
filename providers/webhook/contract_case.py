"""The provider contract (framework.testing.contract) polls a source against recorded
replies; a receiver is called instead, so it names where its own tests check the same
promises (config errors, auth failures, nothing published twice, nothing lost)."""

from __future__ import annotations

PUSH_SOURCES = {
    "http-webhook": "a receiver called by its senders; tests/providers/test_webhook_*.py "
                    "and tests/chaos/test_webhook_*.py check its config errors, each auth "
                    "mode, redeliveries and saved-on-receipt",
}
