"""The ``ble-scanner`` config (``providerConfig``): which adapter scans and how, which
advertisements are kept, how often a device may be published, and the GATT
characteristics to read or subscribe to. Every field is checked when the config is
read, so a malformed UUID or address is an error naming the field."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# The Bluetooth base UUID: a 16- or 32-bit UUID is short for one inside it.
_BASE_UUID = "-0000-1000-8000-00805f9b34fb"
_FULL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHORT_UUID = re.compile(r"^(?:[0-9a-f]{4}|[0-9a-f]{8})$")
_ADDRESS = re.compile(r"^[0-9A-F]{2}(?::[0-9A-F]{2}){5}$")
# ATT caps an attribute value at 512 bytes (Core spec, Vol 3, Part F, 3.2.9).
MAX_ATTRIBUTE_BYTES = 512


def normalize_uuid(uuid: str) -> str:
    """``180a``, ``0000180a`` or the full form, as the lower-case full form."""
    text = uuid.strip().lower()
    if _SHORT_UUID.match(text):
        return text.rjust(8, "0") + _BASE_UUID
    if _FULL_UUID.match(text):
        return text
    raise ValueError(f"{uuid!r} is not a Bluetooth UUID (16-bit like '180f', or "
                     "128-bit like '0000180f-0000-1000-8000-00805f9b34fb')")


def normalize_address(address: str) -> str:
    text = address.strip().upper()
    if not _ADDRESS.match(text):
        raise ValueError(f"{address!r} is not a Bluetooth address (like 'AA:BB:CC:DD:EE:FF')")
    return text


BleUuid = Annotated[str, AfterValidator(normalize_uuid)]
BleAddress = Annotated[str, AfterValidator(normalize_address)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class PassivePattern(_Model):
    """An advertisement monitor pattern (BlueZ's ``or_patterns``): AD structure
    ``adType`` whose data holds ``dataHex`` from byte ``start``."""

    start: int = Field(0, ge=0, le=30)
    ad_type: int = Field(ge=0, le=255)
    data_hex: str = Field(min_length=2, max_length=62, pattern=r"^(?:[0-9a-fA-F]{2})+$")


class Characteristic(_Model):
    """A GATT characteristic of one device: ``read`` every ``intervalMs`` (one
    connection kept while it answers), or ``notify`` (each notification an event)."""

    address: BleAddress
    uuid: BleUuid
    mode: Literal["read", "notify"] = "read"
    interval_ms: int = Field(60_000, ge=100, le=24 * 3600 * 1000)


class BleScannerConfig(_Model):
    """``interface``: the BlueZ adapter (``hci0``). ``serviceUUIDs``: only devices
    advertising one of these services (empty: every device). ``scanMode``: ``active``
    (scan requests, scan responses too) or ``passive`` (listen only; BlueZ then needs
    ``passivePatterns``). See docs/ble.md."""

    # Required: on a host with several adapters, which one scans is a choice to make.
    interface: str = Field(pattern=r"^hci[0-9]{1,3}$")
    service_uuids: list[BleUuid] = Field(default_factory=list, alias="serviceUUIDs",
                                         max_length=64)
    scan_mode: Literal["active", "passive"] = "active"
    passive_patterns: list[PassivePattern] = Field(default_factory=list, max_length=16)
    addresses: list[BleAddress] = Field(default_factory=list, max_length=1000)
    # Rate limit: a device is published at most once per interval (the newest
    # advertisement in it wins).
    min_interval_ms: int = Field(1000, ge=0, le=24 * 3600 * 1000)
    # Dedup: an advertisement like the device's last published one is published again
    # only after this long (0: never).
    republish_after_ms: int = Field(60_000, ge=0)
    # RSSI in steps of this many dBm is part of what "like" means (0: RSSI alone never
    # makes a new event).
    rssi_step_dbm: int = Field(0, ge=0, le=100)
    max_devices: int = Field(1000, ge=1, le=100_000)
    max_pending_values: int = Field(10_000, ge=1, le=1_000_000)
    # While scanning, the adapter is checked this often: one that is gone (unplugged,
    # bluetoothd restarted) fails the window, and the scan starts again when it is back.
    adapter_check_ms: int = Field(2000, ge=100, le=600_000)
    characteristics: list[Characteristic] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _passive_needs_patterns(self) -> BleScannerConfig:
        if self.scan_mode == "passive" and not self.passive_patterns:
            raise ValueError("scanMode 'passive' needs passivePatterns (BlueZ's advertisement "
                             "monitor matches only advertisements with a pattern)")
        if self.passive_patterns and self.scan_mode != "passive":
            raise ValueError("passivePatterns apply only to scanMode 'passive'")
        return self
