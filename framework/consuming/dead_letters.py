"""Dead letters: stream entries that retrying will not fix, kept for operators.

A consumer dead-letters an entry when its handler raised
:class:`~framework.core.errors.DeadLetterError`, or when it was delivered more than
``max_deliveries`` times. The dead letter goes to ``{stream}:dlq`` (or a
configured stream) with the original stream, entry id and fields, the reason,
the error type, the rule and step (when known) and the number of attempts.
Writing it and acknowledging the entry is one Lua script (``dead_letter.lua``),
and so is a replay (``dead_letter_replay.lua``): a crash at any point neither
loses nor doubles a dead letter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from framework.consuming.delivery import Delivery
from framework.consuming.entries import Undecodable
from framework.core.clock import iso_utc
from framework.core.keys import (
    DEFAULT_STREAM_MAXLEN,
    REPLAY_OF_FIELD,
    consumer_errors_key,
    dead_letter_stream,
)
from framework.core.scripts import lua

# "" stands for "unknown" in a stream field (streams hold strings only).
_OPTIONAL = ("rule", "step")


@dataclass(frozen=True)
class DeadLetter:
    """One entry of a dead-letter stream."""

    id: str
    stream: str
    entry_id: str
    fields: dict[str, str]
    reason: str
    error_type: str
    attempts: int
    group: str
    consumer: str
    dead_lettered_at: str
    rule: str | None = None
    step: str | None = None
    # An entry that was not UTF-8: its exact bytes, ``[name, value, ...]`` in base64.
    raw_fields: str | None = None

    @classmethod
    def from_entry(cls, dead_letter_id: str, raw: Mapping[str, str]) -> DeadLetter:
        pairs = orjson.loads(raw.get("fields", "[]"))
        return cls(
            id=dead_letter_id,
            stream=raw.get("stream", ""),
            entry_id=raw.get("entry_id", ""),
            fields=dict(zip(pairs[::2], pairs[1::2], strict=True)),
            reason=raw.get("reason", ""),
            error_type=raw.get("error_type", ""),
            attempts=int(raw.get("attempts") or 0),
            group=raw.get("group", ""),
            consumer=raw.get("consumer", ""),
            dead_lettered_at=raw.get("dead_lettered_at", ""),
            rule=raw.get("rule") or None,
            step=raw.get("step") or None,
            raw_fields=raw.get("raw_fields") or None,
        )

    def as_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = dict(self.fields)
        if "payload" in fields:
            with contextlib.suppress(orjson.JSONDecodeError):  # not JSON: shown as it is
                fields["payload"] = orjson.loads(fields["payload"])
        return {
            "id": self.id, "stream": self.stream, "entryId": self.entry_id,
            "reason": self.reason, "errorType": self.error_type, "attempts": self.attempts,
            "rule": self.rule, "step": self.step, "group": self.group,
            "consumer": self.consumer, "deadLetteredAt": self.dead_lettered_at,
            "fields": fields,
            **({"rawFields": orjson.loads(self.raw_fields)} if self.raw_fields else {}),
        }


@dataclass(frozen=True)
class Failure:
    """Why an entry is dead-lettered."""

    reason: str
    error_type: str
    attempts: int
    rule: str | None = None
    step: str | None = None


class DeadLetterStream:
    """The dead letters of one stream: written by consumers, read and replayed by
    operators (``connector-fleet dlq``)."""

    def __init__(self, redis: Redis, stream: str, *, name: str | None = None,
                 maxlen: int = DEFAULT_STREAM_MAXLEN) -> None:
        self.stream = stream
        self.name = name or dead_letter_stream(stream)
        self._redis = redis
        self._maxlen = maxlen
        self._write = redis.register_script(lua("framework.consuming", "dead_letter"))
        self._replay = redis.register_script(lua("framework.consuming", "dead_letter_replay"))

    async def write(self, delivery: Delivery, failure: Failure, *, at_s: float,
                    undecodable: Undecodable | None = None) -> str | None:
        """Acknowledge ``delivery`` and write its dead letter, atomically; an entry that
        was not UTF-8 keeps its exact bytes in ``raw_fields``.

        None when the entry was no longer pending (another consumer settled it)."""
        letter: dict[str, str] = {
            "stream": delivery.stream,
            "entry_id": delivery.entry_id,
            "reason": failure.reason,
            "error_type": failure.error_type,
            "attempts": str(failure.attempts),
            "rule": failure.rule or "",
            "step": failure.step or "",
            "group": delivery.group,
            "consumer": delivery.consumer,
            "dead_lettered_at": iso_utc(at_s),
            "fields": _flat_json(delivery.fields),
        }
        if undecodable is not None:
            letter["raw_fields"] = undecodable.raw_json()
        args: list[str | int] = [delivery.group, delivery.entry_id, self._maxlen]
        for field, value in letter.items():
            args += [field, value]
        keys = [delivery.stream, self.name, consumer_errors_key(delivery.group, delivery.stream)]
        result = await self._write(keys=keys, args=args)
        return str(result) if result else None

    async def count(self) -> int:
        return int(await self._redis.xlen(self.name))

    async def read(self, *, count: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Oldest first; ``after`` (an id) continues a previous page."""
        start = f"({after}" if after else "-"
        entries = cast(list[tuple[str, dict[str, str]]],
                       await self._redis.xrange(self.name, min=start, count=count))
        return [DeadLetter.from_entry(entry_id, fields) for entry_id, fields in entries]

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        entries = cast(list[tuple[str, dict[str, str]]],
                       await self._redis.xrange(self.name, dead_letter_id, dead_letter_id))
        return DeadLetter.from_entry(*entries[0]) if entries else None

    async def replay(self, dead_letter_id: str) -> str | None:
        """Re-add the original fields to the original stream (a new entry id, with
        ``replay_of`` = the original one) and delete the dead letter; None if there
        is no such dead letter."""
        letter = await self.get(dead_letter_id)
        if letter is None:
            return None
        result = await self._replay(keys=[self.name, letter.stream],
                                    args=[dead_letter_id, self._maxlen, REPLAY_OF_FIELD])
        return str(result) if result else None

    async def purge(self) -> int:
        """Delete every dead letter; returns how many there were."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xlen(self.name)
            pipe.delete(self.name)
            count, _ = await pipe.execute()
        return int(count)


def _flat_json(fields: Mapping[str, str]) -> str:
    """``[field, value, ...]``: keeps the order of the fields for a replay."""
    return orjson.dumps([part for pair in fields.items() for part in pair]).decode()
