"""The commit of a push source: append a batch of messages and save the source's
positions after it, in one fenced script (``lua/append.lua``).

A poller diffs a whole set against the versions it published; a push source
(a broker, a webhook receiver) gets each message once and remembers where it is
in the source instead: Kafka offsets, a replication LSN. Saving the positions in
the same script as the XADDs makes a batch all-or-nothing: after a crash at any
point the source resumes from the positions saved with the last batch that
reached the stream, so nothing is lost and nothing is appended twice.

Sources that cannot resume from a position (MQTT, AMQP, webhooks: the peer
redelivers what was not acknowledged) give a *dedupe key* per message instead:
the broker's message id or the client's Idempotency-Key. A key appended within
the dedupe window is dropped, atomically with the append, so a redelivery after
a crash between the commit and the acknowledgement is not appended twice. The
keys live in one sorted set per connector, bounded by the window and a count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core.clock import Clock
from framework.core.connections import redis_failures
from framework.core.keys import ConnectorKeys
from framework.core.scripts import lua
from framework.polling.commit_session import commit_refusal
from framework.polling.config import ConnectorConfig
from framework.polling.durability import ReplicaAcks, check_acks

# A batch whose appends do not depend on the state it was read with.
ANY_GENERATION = "*"


@dataclass(frozen=True, slots=True)
class Message:
    """One message ready to append: its stream ``item_id`` (unique per message, so
    consumers' idempotency on (connector, item_id, version) holds), its encoded
    event, and the key that identifies a redelivery ("" when there is none)."""

    item_id: str
    payload: bytes
    dedupe_key: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be made an event: kept raw, with why, in the
    connector's rejected stream (``connector:state:NAME:rejected``) rather than lost,
    and acknowledged with its batch so that it never comes back."""

    item_id: str
    error: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class DedupeWindow:
    """How long (and how many) dedupe keys are kept: a redelivery later than this is
    appended again. 0 ms keeps none."""

    ms: int = 24 * 3600 * 1000
    max_keys: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Appended:
    generation: str
    appended: int
    duplicates: int


class Appender:
    """Runs ``append.lua`` for one connector (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        config: ConnectorConfig,
        token: Callable[[], str],
        *,
        clock: Clock,
        keys: ConnectorKeys,
        acks: ReplicaAcks,
        window: DedupeWindow,
    ) -> None:
        self._redis = redis
        self._config = config
        self._token = token
        self._clock = clock
        self._keys = keys.append_keys
        self._acks = acks
        self._window = window
        self._script = redis.register_script(lua("framework.polling", "append"))

    async def append(
        self,
        messages: Sequence[Message],
        *,
        rejected: Sequence[Rejected] = (),
        generation: str = ANY_GENERATION,
        state: Mapping[str, str] | None = None,
    ) -> Appended:
        """Append ``messages``, keep ``rejected`` and set ``state`` fields (e.g.
        ``cursors``) in one step.

        Raises :class:`LeaseLostError` when this instance no longer holds the lease
        and :class:`StateConflictError` when the state moved past ``generation``:
        either way nothing was appended. With replica acks required, raises
        :class:`ReplicasNotAckedError` when too few replicas acknowledged in time:
        then the batch may or may not survive a failover, and is not counted."""
        args = self._args(messages, rejected, generation, state or {})
        async with redis_failures(self._config.name):
            try:
                reply = await self._run(args)
            except redis_errors.ResponseError as exc:
                raise commit_refusal(exc, self._config.name) from None
        new_generation, appended, duplicates = reply
        return Appended(str(new_generation), int(appended), int(duplicates))

    async def _run(self, args: list[str | bytes | int]) -> list[int]:
        if not self._acks.required:
            return await self._script(keys=self._keys, args=args)  # type: ignore[no-any-return]
        # WAIT counts the writes of its own connection: one pipeline, one connection.
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._script(keys=self._keys, args=args, client=pipe)
            pipe.wait(self._acks.replicas, self._acks.timeout_ms)
            reply, acked = await pipe.execute()
        check_acks(acked, self._acks, connector=self._config.name)
        return reply  # type: ignore[no-any-return]

    def _args(
        self, messages: Sequence[Message], rejected: Sequence[Rejected], generation: str,
        state: Mapping[str, str],
    ) -> list[str | bytes | int]:
        config = self._config
        args: list[str | bytes | int] = [
            self._token(), generation, config.stream_max_len, config.name, config.type,
            int(self._clock.time() * 1000), self._window.ms, self._window.max_keys, len(state),
        ]
        for field, value in state.items():
            args += (field, value)
        args.append(len(rejected))
        for item in rejected:
            args += (item.item_id, item.error, item.raw)
        for message in messages:
            args += (message.item_id, message.dedupe_key, message.payload)
        return args
