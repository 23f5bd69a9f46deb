"""opcua-source's case for the provider contract: its config errors only (an OPC-UA
server has no HTTP replies to record; tests/providers/opcua covers it on a real
asyncua server)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = ("an OPC-UA source, not an HTTP one: tests/providers/opcua subscribes to and polls "
       "a real asyncua server")


class OpcUaEvent(BaseModel):
    source: str
    value: Any
    timestamp: str
    nodeId: str
    unit: str | None = None
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="opcua-source", signal_model=OpcUaEvent,
        provider_config=lambda _url: {"endpoint": "opc.tcp://127.0.0.1:4840/fleet",
                                      "nodeIds": ["ns=2;s=Temperature"],
                                      "username": "fleet", "password": "contract-secret"},
        required_fields=["endpoint", "nodeIds"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
