"""amqp-source's case for the provider contract: its config errors only (a broker
has no HTTP replies to record; tests/providers/amqp covers it on a real RabbitMQ)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = "an AMQP broker, not an HTTP source: tests/providers/amqp covers it on RabbitMQ"


class AmqpEvent(BaseModel):
    source: str
    value: Any
    timestamp: str
    nodeId: str
    unit: str | None = None
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="amqp-source", signal_model=AmqpEvent,
        provider_config=lambda _url: {"url": "amqp://fleet:contract-secret@127.0.0.1:5672/",
                                      "queue": "orders"},
        required_fields=["url", "queue"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
