"""The device registry's Redis keys, ids and limits (one place, one hash tag).

Every key carries the hash tag ``{devices}``: the Lua scripts touch a device's hash,
the deadlines and the index in one call, so on a Redis Cluster they share a slot.
The events stream is named by the deployment (default ``device-events``); on a
Cluster, name it with the same tag (``{devices}:events``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from framework.consuming import DEFAULT_DEVICE_EVENTS_STREAM

DEFAULT_PREFIX = "fleet:{devices}"
DEFAULT_EVENTS_STREAM = DEFAULT_DEVICE_EVENTS_STREAM
DEFAULT_GROUP = "default"
DEFAULT_TIMEOUT_S = 1800.0  # 30 minutes, the example of issue 19
MAX_TAGS = 32

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
_TAG = re.compile(r"[A-Za-z0-9_.:=/@-]{1,64}")


def check_device_id(value: object, where: str = "deviceId") -> str:
    """The id itself, or ValueError naming ``where``: ids become key names, never paths."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{where}: expected 1 to 128 letters, digits or _ . : @ - "
                         f"(starting with a letter or digit), got {_shown(value)}")
    return value


def check_group(value: object, where: str = "group") -> str:
    return check_device_id(value, where)


def check_tags(value: object, where: str = "tags") -> list[str]:
    if not isinstance(value, list | tuple) or len(value) > MAX_TAGS:
        raise ValueError(f"{where}: expected a list of at most {MAX_TAGS} tags")
    for index, tag in enumerate(value):
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise ValueError(f"{where}[{index}]: expected 1 to 64 letters, digits or "
                             f"_ . : = / @ -, got {_shown(tag)}")
    return sorted(set(value))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class DeviceKeys:
    prefix: str = DEFAULT_PREFIX
    events_stream: str = DEFAULT_EVENTS_STREAM

    def device(self, device_id: str) -> str:
        return f"{self.prefix}:device:{device_id}"

    @property
    def device_prefix(self) -> str:
        return f"{self.prefix}:device:"

    @property
    def index(self) -> str:
        """Every device id, score 0 (ZRANGEBYLEX pages through them in order)."""
        return f"{self.prefix}:index"

    def group(self, group: str) -> str:
        return f"{self.group_prefix}{group}"

    @property
    def group_prefix(self) -> str:
        return f"{self.prefix}:group:"

    @property
    def timeouts(self) -> str:
        """group -> absence timeout in ms."""
        return f"{self.prefix}:timeouts"

    @property
    def deadlines(self) -> str:
        """device id -> the time (ms) after which it is absent."""
        return f"{self.prefix}:deadlines"

    def maintenance(self, group: str) -> str:
        """A group's maintenance windows: window id -> JSON ``{id, startMs, endMs, ...}``."""
        return f"{self.maintenance_prefix}{group}"

    @property
    def maintenance_prefix(self) -> str:
        return f"{self.prefix}:maintenance:"

    @property
    def maintenance_groups(self) -> str:
        """The groups that have (or had) windows."""
        return f"{self.prefix}:maintenance-groups"

    @property
    def watchdog_lease(self) -> str:
        return f"{self.prefix}:watchdog-lease"
