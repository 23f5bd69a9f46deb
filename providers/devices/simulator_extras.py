"""What a simulated device answers besides firmware, reboot and self-test: its
settings (config, sleep schedule, threshold monitors, signing key), its GPIO lines,
its buffered readings (compressed in batches kept until acknowledged) and its mesh
neighbours. Pure state, like :mod:`providers.devices.simulator_device`.

A key rotation reports the new key's fingerprint only: no key material ever leaves
the device. A batch handed out by ``data_compress`` stays on the device until
``data_ack`` names it, so an upload that fails loses nothing (the next call hands
the same batch out again).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

GPIO_LINES = 32
MAX_BUFFERED = 10_000


class ExtraRefused(Exception):
    """Answered ``ok: false`` with ``code`` (the device module maps it)."""

    def __init__(self, message: str, code: str = "bad_params") -> None:
        self.code = code
        super().__init__(message)


@dataclass
class DeviceExtras:
    key_id: str = "key-1"
    previous_key_id: str | None = None
    sleep_schedule: dict[str, Any] | None = None
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpio: list[int] = field(default_factory=lambda: [0] * GPIO_LINES)
    buffer: list[float] = field(default_factory=lambda: [20.0 + i / 10 for i in range(10)])
    pending: dict[str, list[float]] = field(default_factory=dict)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    readings: int = 0


class SimulatedDevice(Protocol):
    """What these commands use of :class:`providers.devices.simulator_device.SimulatedDevice`
    (which imports this module)."""

    device_id: str
    config: dict[str, Any]
    self_test_passed: bool
    extras: DeviceExtras


def fingerprint(device_id: str, key_id: str) -> str:
    return hashlib.sha256(f"{device_id}/{key_id}".encode()).hexdigest()[:16]


def _get_settings(device: SimulatedDevice, _params: Mapping[str, Any],
                  _now_s: float) -> dict[str, Any]:
    extras = device.extras
    return {"config": dict(device.config), "sleep_schedule": extras.sleep_schedule,
            "monitors": dict(extras.monitors), "key_id": extras.key_id,
            "previous_key_id": extras.previous_key_id,
            "key_fingerprint": fingerprint(device.device_id, extras.key_id),
            "self_test_passed": device.self_test_passed, "gpio": list(extras.gpio),
            "buffered": len(extras.buffer), "pending_batches": len(extras.pending)}


def _object_or_null(params: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if value is not None and not isinstance(value, dict):
        raise ExtraRefused(f"params.{name}: expected an object or null")
    return value


def _config_set(device: SimulatedDevice, params: Mapping[str, Any],
                _now_s: float) -> dict[str, Any]:
    config = _object_or_null(params, "config")
    if config is None:
        raise ExtraRefused("params.config: expected an object")
    if params.get("replace") is True:
        device.config.clear()
    device.config.update(config)
    return {"config": dict(device.config)}


def _sleep_schedule(device: SimulatedDevice, params: Mapping[str, Any],
                    _now_s: float) -> dict[str, Any]:
    device.extras.sleep_schedule = _object_or_null(params, "schedule")
    return {"sleep_schedule": device.extras.sleep_schedule}


def _threshold_set(device: SimulatedDevice, params: Mapping[str, Any],
                   _now_s: float) -> dict[str, Any]:
    monitor_id = params.get("monitorId")
    if not isinstance(monitor_id, str) or not 0 < len(monitor_id) <= 64:
        raise ExtraRefused("params.monitorId: expected a string of 1-64 characters")
    monitor = _object_or_null(params, "monitor")
    if monitor is None:
        device.extras.monitors.pop(monitor_id, None)
    else:
        device.extras.monitors[monitor_id] = monitor
    return {"monitorId": monitor_id, "monitor": monitor}


def _key_rotate(device: SimulatedDevice, params: Mapping[str, Any],
                _now_s: float) -> dict[str, Any]:
    extras = device.extras
    key_id = params.get("keyId")
    if not isinstance(key_id, str) or not 0 < len(key_id) <= 64:
        raise ExtraRefused("params.keyId: expected a string of 1-64 characters")
    if key_id != extras.key_id:  # the previous key comes back, or a new one is made
        extras.previous_key_id, extras.key_id = extras.key_id, key_id
    return {"key_id": extras.key_id, "previous_key_id": extras.previous_key_id,
            "key_fingerprint": fingerprint(device.device_id, extras.key_id)}


def _line(params: Mapping[str, Any]) -> int:
    line = params.get("line")
    if not isinstance(line, int) or isinstance(line, bool) or not 0 <= line < GPIO_LINES:
        raise ExtraRefused(f"params.line: expected an integer in 0..{GPIO_LINES - 1}")
    return line


def _gpio_write(device: SimulatedDevice, params: Mapping[str, Any],
                _now_s: float) -> dict[str, Any]:
    line, value = _line(params), params.get("value")
    if value not in (0, 1) or isinstance(value, bool):
        raise ExtraRefused("params.value: expected 0 or 1")
    previous, device.extras.gpio[line] = device.extras.gpio[line], int(value)
    return {"line": line, "value": int(value), "previous": previous}


def _gpio_read(device: SimulatedDevice, params: Mapping[str, Any],
               _now_s: float) -> dict[str, Any]:
    line = _line(params)
    return {"line": line, "value": device.extras.gpio[line]}


def _telemetry_read(device: SimulatedDevice, _params: Mapping[str, Any],
                    _now_s: float) -> dict[str, Any]:
    extras = device.extras
    extras.readings += 1
    value = round(20.0 + (extras.readings % 7) / 2, 2)
    if len(extras.buffer) < MAX_BUFFERED:
        extras.buffer.append(value)
    return {"value": value, "unit": "C", "buffered": len(extras.buffer)}


def _data_compress(device: SimulatedDevice, _params: Mapping[str, Any],
                   _now_s: float) -> dict[str, Any]:
    extras = device.extras
    if not extras.pending:
        if not extras.buffer:
            raise ExtraRefused("nothing buffered to upload", "empty")
        extras.pending[uuid.uuid4().hex[:16]], extras.buffer = extras.buffer, []
    batch_id, readings = next(iter(extras.pending.items()))
    lines = "".join(json.dumps({"deviceId": device.device_id, "value": value}) + "\n"
                    for value in readings).encode()
    data = gzip.compress(lines, mtime=0)
    return {"batchId": batch_id, "codec": "gzip", "count": len(readings),
            "sha256": hashlib.sha256(data).hexdigest(),
            "data": base64.b64encode(data).decode()}


def _data_ack(device: SimulatedDevice, params: Mapping[str, Any],
              _now_s: float) -> dict[str, Any]:
    dropped = device.extras.pending.pop(str(params.get("batchId")), None)
    return {"dropped": 0 if dropped is None else len(dropped)}


def _topology(device: SimulatedDevice, _params: Mapping[str, Any],
              _now_s: float) -> dict[str, Any]:
    return {"neighbours": list(device.extras.neighbours)}


def assign_mesh(devices: Mapping[str, SimulatedDevice]) -> None:
    """A binary tree in id order: device i's parent is (i - 1) // 2; the signal is
    weaker the deeper the link."""
    ids = list(devices)
    for index, device_id in enumerate(ids):
        links = [(index - 1) // 2] if index else []
        links += [child for child in (2 * index + 1, 2 * index + 2) if child < len(ids)]
        devices[device_id].extras.neighbours = [  # a link is as weak as its deeper end
            {"deviceId": ids[other], "rssi": -40 - 5 * (max(index, other) + 1).bit_length()}
            for other in links]


Command = Callable[[SimulatedDevice, Mapping[str, Any], float], dict[str, Any]]
EXTRA_COMMANDS: dict[str, Command] = {
    "get_settings": _get_settings,
    "config_set": _config_set,
    "sleep_schedule": _sleep_schedule,
    "threshold_set": _threshold_set,
    "key_rotate": _key_rotate,
    "gpio_write": _gpio_write,
    "gpio_read": _gpio_read,
    "telemetry_read": _telemetry_read,
    "data_compress": _data_compress,
    "data_ack": _data_ack,
    "topology": _topology,
}
