"""modbus-tcp's case for the provider contract: its config errors only (a Modbus
slave has no HTTP replies to record; tests/providers/test_modbus_source.py and
tests/chaos/test_modbus_kill.py poll real pymodbus slaves)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = ("a Modbus TCP source, not an HTTP one: tests/providers/test_modbus_source.py "
       "polls real pymodbus slaves")


class ModbusEvent(BaseModel):
    source: str
    value: Any
    unit: str | None = None
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="modbus-tcp", signal_model=ModbusEvent,
        provider_config=lambda _url: {
            "host": "127.0.0.1", "port": 1502, "unitId": 1,
            "registers": [{"name": "temperature", "address": 0, "type": "float32",
                           "unit": "degC"}]},
        required_fields=["host", "registers"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
