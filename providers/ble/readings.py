"""What ``ble-scanner`` receives: advertisements and characteristic values, and the
per-device throttle that decides which advertisements are published.

The throttle keeps, per device, the newest advertisement not yet published and what
was last published. A device is published at most once per ``minIntervalMs`` (the
newest advertisement in the interval wins: coalesced, not queued), and an
advertisement like the last published one (same name, data and services, and RSSI
in the same ``rssiStepDbm`` step when that is set) only once ``republishAfterMs``
has passed. At most ``maxDevices`` devices are tracked; the one heard from least
recently is forgotten first (it is published again when next heard, as after a
restart: this state is in memory on purpose, advertisements are repeated by the
devices themselves).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

_sequence = itertools.count()


@dataclass(frozen=True)
class Advertisement:
    address: str
    rssi: int
    name: str | None = None
    tx_power: int | None = None
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    received_at_s: float = 0.0
    sequence: int = field(default_factory=lambda: next(_sequence))

    def fingerprint(self, rssi_step_dbm: int) -> str:
        """What makes two advertisements alike (see the module docstring)."""
        parts: list[Any] = [self.name, self.tx_power, sorted(self.manufacturer_data.items()),
                            sorted(self.service_data.items()), sorted(self.service_uuids)]
        if rssi_step_dbm:
            parts.append(self.rssi // rssi_step_dbm)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def value(self) -> dict[str, Any]:
        return {"kind": "advertisement", "address": self.address, "name": self.name,
                "rssi": self.rssi, "txPower": self.tx_power,
                "manufacturerData": {str(company): data.hex() for company, data
                                     in sorted(self.manufacturer_data.items())},
                "serviceData": {uuid: data.hex() for uuid, data
                                in sorted(self.service_data.items())},
                "serviceUuids": sorted(self.service_uuids)}


@dataclass(frozen=True)
class CharacteristicValue:
    """A value read from a characteristic (``read``) or notified by it (``notify``)."""

    address: str
    uuid: str
    mode: str
    data: bytes
    received_at_s: float = 0.0
    sequence: int = field(default_factory=lambda: next(_sequence))

    def value(self) -> dict[str, Any]:
        return {"kind": self.mode, "address": self.address, "characteristic": self.uuid,
                "valueHex": self.data.hex(), "size": len(self.data)}


Reading = Advertisement | CharacteristicValue


@dataclass
class _Device:
    pending: Advertisement | None = None
    published_fingerprint: str | None = None
    published_at_s: float | None = None


@dataclass(frozen=True)
class ThrottleRules:
    min_interval_s: float
    republish_after_s: float  # 0: never
    rssi_step_dbm: int
    max_devices: int


class DeviceThrottle:
    """Per-device dedup and rate limit (see the module docstring). ``now_s`` is a
    monotonic clock reading."""

    def __init__(self, rules: ThrottleRules) -> None:
        self._rules = rules
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self.forgotten = 0

    def offer(self, advertisement: Advertisement) -> None:
        device = self._devices.pop(advertisement.address, None) or _Device()
        device.pending = advertisement
        self._devices[advertisement.address] = device  # most recently heard: last
        while len(self._devices) > self._rules.max_devices:
            self._devices.popitem(last=False)
            self.forgotten += 1

    def take_due(self, now_s: float, limit: int) -> list[Advertisement]:
        """The pending advertisements that may be published now (at most ``limit``);
        those that are alike to the last published one and not due are dropped."""
        due: list[Advertisement] = []
        for device in self._devices.values():
            if len(due) >= limit:
                break
            advertisement = device.pending
            if advertisement is None or not self._interval_passed(device, now_s):
                continue
            device.pending = None
            fingerprint = advertisement.fingerprint(self._rules.rssi_step_dbm)
            if fingerprint == device.published_fingerprint and not self._republish_due(
                    device, now_s):
                continue
            device.published_fingerprint, device.published_at_s = fingerprint, now_s
            due.append(advertisement)
        return due

    def next_due_s(self, now_s: float) -> float | None:
        """How long until a pending advertisement may be published (None: none pending)."""
        waits = [0.0 if device.published_at_s is None else
                 max(0.0, device.published_at_s + self._rules.min_interval_s - now_s)
                 for device in self._devices.values() if device.pending is not None]
        return min(waits, default=None)

    def _interval_passed(self, device: _Device, now_s: float) -> bool:
        return (device.published_at_s is None
                or now_s - device.published_at_s >= self._rules.min_interval_s)

    def _republish_due(self, device: _Device, now_s: float) -> bool:
        after_s = self._rules.republish_after_s
        return (after_s > 0 and device.published_at_s is not None
                and now_s - device.published_at_s >= after_s)

    def forget_pending(self) -> None:
        """Drop what was not published (the source stopped: devices advertise again)."""
        for device in self._devices.values():
            device.pending = None
