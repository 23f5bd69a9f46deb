"""``ConsumerOptions``: what a :class:`~framework.consuming.consumer.Consumer` reads and how, and
the ordering key of an entry (``order_by``)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from framework.core.errors import ConfigError
from framework.core.keys import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_CONSUMER_GROUP,
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_START_ID,
)

_START_ID = re.compile(r"\$|0|\d+(-\d+)?")


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ConsumerOptions:
    """Invalid values raise :class:`~framework.core.errors.ConfigError` naming every problem."""

    streams: tuple[str, ...]
    group: str = DEFAULT_CONSUMER_GROUP
    consumer: str = field(default_factory=default_consumer_name)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    # The visibility timeout: an entry pending this long without a heartbeat is
    # taken over by another consumer.
    claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    # A field name (or dotted path) read from the entry's fields, else its JSON payload.
    order_by: str | None = None
    # "{stream}" is replaced by the stream's name.
    dead_letter_stream: str = "{stream}" + DEAD_LETTER_SUFFIX
    # Where a new group starts: "$" only new entries (stale events trigger nothing), "0" all,
    # or an entry id. An existing group keeps its position: this applies at creation only.
    start_id: str = DEFAULT_START_ID
    block_ms: int = 1_000
    # First delay of an in-place retry (order_by); doubles per delivery.
    retry_delay_ms: int = 1_000
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    # Stop (and drain) once a read finds no new entry: for scripts and tests (arq's burst).
    burst: bool = False

    def __post_init__(self) -> None:
        problems = [message for wrong, message in (
            (not self.streams, "at least one stream is required"),
            (self.max_in_flight < 1, f"max_in_flight must be >= 1, got {self.max_in_flight}"),
            (self.claim_idle_ms < 10, f"claim_idle_ms must be >= 10, got {self.claim_idle_ms}"),
            (self.max_deliveries < 1, f"max_deliveries must be >= 1, got {self.max_deliveries}"),
            (self.block_ms < 1, f"block_ms must be >= 1, got {self.block_ms}"),
            (not self.group or not self.consumer, "group and consumer names must not be empty"),
            (not _START_ID.fullmatch(self.start_id),
             f"start_id must be '$', '0' or an entry id, got {self.start_id!r}"),
        ) if wrong]
        if problems:
            raise ConfigError("invalid consumer options: " + "; ".join(problems))

    def dead_letter_stream_of(self, stream: str) -> str:
        return self.dead_letter_stream.replace("{stream}", stream)


def order_key(fields: Mapping[str, str], path: str | None) -> str | None:
    """The ordering key of an entry: ``path`` in its fields, else in its JSON payload
    (dots go down into objects); None when absent (the entry is not ordered)."""
    if path is None:
        return None
    if path in fields:
        return fields[path]
    try:
        value: Any = orjson.loads(fields.get("payload", "null"))
    except orjson.JSONDecodeError:
        return None
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else str(value)
