"""ble-scanner's case for the provider contract: its config errors only (a radio has
no HTTP replies to record; tests/providers/ble covers it on a fake BlueZ)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = "a Bluetooth scan, not an HTTP source: tests/providers/ble covers it on a fake BlueZ"


class BleEvent(BaseModel):
    source: str
    value: dict[str, Any]
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="ble-scanner", signal_model=BleEvent,
        provider_config=lambda _url: {"interface": "hci0", "serviceUUIDs": ["181a"],
                                      "characteristics": [{"address": "AA:BB:CC:DD:EE:01",
                                                           "uuid": "2a6e"}]},
        required_fields=["interface"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
