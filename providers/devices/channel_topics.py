"""Device ids, command names and the MQTT topics they make.

A device id comes from event data (a rule's ``{{ event.deviceId }}``): it is only
ever used as one topic level, and only when it is a plain name, so an event can
never choose a topic outside ``devices/{id}/...`` (no ``/``, no wildcard, no NUL).
"""

from __future__ import annotations

import re

from framework.core import PermanentSourceError

TOPIC_ROOT = "devices"
# Letters, digits and ``. _ : @ -``; starts with a letter or digit; at most 128 (the
# registry's device ids, providers/devices/registry_keys.py).
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
# A command is a lower-case dotted name: ``firmware_update``, ``sim.go_silent``.
COMMAND_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
MAX_COMMAND_CHARS = 64


class InvalidDeviceRequestError(PermanentSourceError):
    """A device id, command or parameters that cannot be sent (never retried)."""


def check_device_id(device_id: object) -> str:
    """The id itself, or :class:`InvalidDeviceRequestError` naming what is wrong."""
    if not isinstance(device_id, str) or DEVICE_ID.fullmatch(device_id) is None:
        shown = repr(device_id)[:80]
        raise InvalidDeviceRequestError(
            f"device id {shown}: expected 1-128 letters, digits or '._:@-' "
            "(it becomes one MQTT topic level)")
    return device_id


def check_command(command: object) -> str:
    if (not isinstance(command, str) or len(command) > MAX_COMMAND_CHARS
            or COMMAND_NAME.fullmatch(command) is None):
        raise InvalidDeviceRequestError(
            f"device command {repr(command)[:80]}: expected a lower-case dotted name "
            f"of at most {MAX_COMMAND_CHARS} characters")
    return command


def command_topic(device_id: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{check_device_id(device_id)}/cmd"


def response_topic(device_id: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{check_device_id(device_id)}/res"


def device_of(topic: str, root: str = TOPIC_ROOT) -> str | None:
    """The device id of ``{root}/{id}/...``, or None when the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != root or DEVICE_ID.fullmatch(parts[1]) is None:
        return None
    return parts[1]
