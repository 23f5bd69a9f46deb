"""The absence trigger: "no event matching M for device D for T" runs a rule's steps.

::

    {"name": "meter-silent",
     "absence": {"match": {"streams": ["meter-readings"], "type": "meter.heartbeat"},
                 "device": "payload.meterId", "group": "payload.site", "for": "30m",
                 "stream": "device-events"},
     "steps": [{"call": "log", "params": {"message": "{{ payload.deviceId }} silent"}}]}

It is written as two plain rules when the file loads, so matching, templating and
exactly-once execution are the ordinary ones:

* ``NAME:heartbeat`` matches M and calls ``device_heartbeat`` with the device id
  read at D (and the group at ``group``, for devices not yet registered): the
  device registry moves the device's deadline to now + T (T of its group if the
  group sets one);
* ``NAME`` matches the ``device.absent`` events that the watchdog adds to
  ``stream`` (default ``device-events``) for this rule, and runs the steps; the
  event's payload has ``deviceId``, ``group``, ``lastSeen``, ``deadlineMs``...

The watchdog (``connector-fleet devices watch``) and the registry are in
``providers.devices``; the capability ``device_heartbeat`` is registered with the
built-in ones.
"""

from __future__ import annotations

import re
from typing import Any

HEARTBEAT_CAPABILITY = "device_heartbeat"
DEFAULT_DEVICE_EVENTS_STREAM = "device-events"
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)+")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_KEYS = {"match", "device", "group", "for", "stream"}


def parse_duration_s(raw: Any) -> float | None:
    """Seconds from ``1800``, ``"30m"``, ``"4h"``, ``"90s"``, ``"1d"``; None if invalid."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw) if raw > 0 else None
    if isinstance(raw, str) and (found := _DURATION.fullmatch(raw.strip())):
        seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
        return seconds if seconds > 0 else None
    return None


def expand_absence(raw: Any, where: str) -> tuple[list[Any], list[str]]:
    """The rules that ``raw`` stands for (itself when it has no ``absence``), and the
    problems of its ``absence`` block, each naming ``where``."""
    if not isinstance(raw, dict) or "absence" not in raw:
        return [raw], []
    name = raw.get("name")
    label = f"rule {name if isinstance(name, str) else where} ({where}.absence)"
    spec = raw["absence"]
    if not isinstance(spec, dict):
        return [], [f"{label}: expected an object with match, device and for"]
    problems = [f"{label}.{key}: unknown key" for key in sorted(set(spec) - _KEYS)]
    if "match" in raw:
        problems.append(f"{label}: a rule with an absence trigger has no match of its own "
                        "(put it in absence.match)")
    device, group = spec.get("device"), spec.get("group")
    if not isinstance(device, str) or not _PATH.fullmatch(device):
        problems.append(f"{label}.device: expected the dotted path of the device id "
                        "in the event (payload.deviceId)")
    if group is not None and (not isinstance(group, str) or not _PATH.fullmatch(group)):
        problems.append(f"{label}.group: expected a dotted path (payload.site)")
    timeout_s = parse_duration_s(spec.get("for"))
    if timeout_s is None or timeout_s > 366 * 86400:
        problems.append(f"{label}.for: expected a duration up to 366 days "
                        "(seconds, or 90s, 30m, 4h, 1d)")
    stream = spec.get("stream", DEFAULT_DEVICE_EVENTS_STREAM)
    if not isinstance(stream, str) or not stream:
        problems.append(f"{label}.stream: expected a stream name")
    if not isinstance(name, str) or problems:
        return ([] if problems else [raw]), problems
    return _rules(raw, name, spec, timeout_s or 0.0, stream), []


def _rules(raw: dict[str, Any], name: str, spec: dict[str, Any], timeout_s: float,
           stream: str) -> list[Any]:
    params: dict[str, Any] = {
        "deviceId": "{{ " + spec["device"] + " }}", "timeoutS": timeout_s, "rule": name,
        "context": {"type": "{{ type }}", "source": "{{ source }}", "stream": "{{ stream }}"}}
    if spec.get("group"):
        params["group"] = "{{ " + spec["group"] + " }}"
    heartbeat = {"name": f"{name}:heartbeat", "match": spec.get("match", {}),
                 "steps": [{"id": "heartbeat", "call": HEARTBEAT_CAPABILITY, "params": params}]}
    trigger = {key: value for key, value in raw.items() if key != "absence"}
    trigger["match"] = {"stream": stream, "type": "device.absent", "payload.rule": name}
    return [heartbeat, trigger]
