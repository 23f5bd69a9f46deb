"""mqtt-source's case for the provider contract: its config errors only (a broker
has no HTTP replies to record; tests/providers/mqtt covers it on a real Mosquitto)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = "an MQTT broker, not an HTTP source: tests/providers/mqtt covers it on Mosquitto"


class MqttEvent(BaseModel):
    source: str
    value: Any
    timestamp: str
    nodeId: str
    unit: str | None = None
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="mqtt-source", signal_model=MqttEvent,
        provider_config=lambda _url: {"broker": "mqtt://127.0.0.1:1883", "topic": "plant/+/temp",
                                      "username": "fleet", "password": "contract-secret"},
        required_fields=["broker", "topic"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
