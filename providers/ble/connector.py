"""The ``ble-scanner`` connector type: advertisements and GATT values as source
events, appended under the lease (see docs/ble.md).

An event per reading: ``value`` is the advertisement (``kind: advertisement``,
``address``, ``name``, ``rssi``, ``txPower``, ``manufacturerData`` by company id,
``serviceData`` by UUID, both hex, ``serviceUuids``) or the characteristic value
(``kind: read`` or ``notify``, ``address``, ``characteristic``, ``valueHex``,
``size``); ``nodeId`` is the device address; ``timestamp`` when it was received.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
    source_event,
)
from providers.ble.config import MAX_ATTRIBUTE_BYTES, BleScannerConfig
from providers.ble.readings import Advertisement, Reading
from providers.ble.source import BleSource

BLE_SCANNER_TYPE = "ble-scanner"
# Advertising data is at most 31 bytes (251 extended) a packet; BlueZ merges the
# scan response in. Anything larger is not an advertisement.
MAX_ADVERTISED_BYTES = 1024


class BleEvents:
    """How one connector's readings become events and item ids."""

    def __init__(self, settings: BleScannerConfig) -> None:
        self._settings = settings

    def event(self, reading: Reading) -> dict[str, Any]:
        check_size(reading)
        return source_event(
            source="ble", value=reading.value(), node_id=reading.address,
            timestamp=datetime.fromtimestamp(reading.received_at_s, UTC),
            metadata={"interface": self._settings.interface})

    @staticmethod
    def item_id(reading: Reading) -> str:
        """Unique per reading, across restarts too (received time and a counter)."""
        kind = "adv" if isinstance(reading, Advertisement) else reading.mode
        return f"{reading.address}/{kind}/{int(reading.received_at_s * 1000)}-{reading.sequence}"

    @staticmethod
    def raw(reading: Reading) -> bytes:
        return orjson.dumps(reading.value())


def check_size(reading: Reading) -> None:
    """Raises ValueError (the reading is kept in the rejected stream) when it is larger
    than BLE allows: a broken or hostile peer, not a device's data."""
    if isinstance(reading, Advertisement):
        size = sum(map(len, reading.manufacturer_data.values())) + sum(
            map(len, reading.service_data.values())) + len((reading.name or "").encode())
        if size > MAX_ADVERTISED_BYTES:
            raise ValueError(f"advertisement of {reading.address} carries {size} bytes "
                             f"(more than {MAX_ADVERTISED_BYTES})")
    elif len(reading.data) > MAX_ATTRIBUTE_BYTES:
        raise ValueError(f"characteristic {reading.uuid} of {reading.address} gave "
                         f"{len(reading.data)} bytes (ATT allows {MAX_ATTRIBUTE_BYTES})")


def create_ble_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(BleScannerConfig, config)
    source = BleSource(config, settings, context.clock, context.logger)
    events = BleEvents(settings)
    parts = PushParts(source=source, item_id=events.item_id, transformer=events.event,
                      raw=events.raw)
    return PushConnector[Reading, dict[str, Any]](
        config=config, parts=parts, store=context.store, clock=context.clock,
        logger=context.logger)
