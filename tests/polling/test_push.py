"""The push connector on a real Redis: a batch is appended with its positions in one
fenced step and acknowledged only after; a failed commit hands the batch back."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.core.errors import LeaseLostError
from framework.core.logs import get_logger
from framework.polling import (
    Batch,
    ConnectorConfig,
    DedupeWindow,
    Lease,
    PushConnector,
    PushParts,
    ReplicaAcks,
    ReplicasNotAckedError,
    StateStore,
)
from framework.testing import RedisServer

STREAM = "raw-input-signals"


@dataclass(frozen=True)
class Note:
    offset: int
    body: bytes
    message_id: str | None = None


class QueueBroker:
    """A peer with a broker's delivery rules: what is received and not acknowledged
    goes back to the queue when the consumer disconnects; positions are offsets."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.queue: deque[Note] = deque()
        self.in_flight: list[Note] = []
        self.starts: list[Mapping[str, str]] = []
        self.stream_length_at_ack: list[int] = []
        self.acked: list[int] = []
        self.stops = 0

    def publish(self, *bodies: bytes, ids: list[str | None] | None = None) -> None:
        base = len(self.queue) + len(self.in_flight) + len(self.acked)
        for i, body in enumerate(bodies):
            self.queue.append(Note(base + i, body, ids[i] if ids else None))

    async def start(self, positions: Mapping[str, str]) -> None:
        self.starts.append(dict(positions))

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Note]:
        taken = [self.queue.popleft() for _ in range(min(max_messages, len(self.queue)))]
        if not taken:
            await asyncio.sleep(min(wait_s, 0.01))
            return Batch()
        self.in_flight += taken
        return Batch(taken, {"queue": str(taken[-1].offset + 1)})

    async def acknowledge(self, batch: Batch[Note]) -> None:
        self.stream_length_at_ack.append(await self._redis.xlen(STREAM))
        for note in batch.messages:
            self.in_flight.remove(note)
            self.acked.append(note.offset)

    async def stop(self) -> None:
        self.stops += 1
        self.queue.extendleft(reversed(self.in_flight))
        self.in_flight = []


def transform(note: Note) -> dict[str, Any]:
    document = orjson.loads(note.body)
    return {"source": "queue", "value": document["v"], "timestamp": "2026-12-03T00:00:00Z",
            "nodeId": "n1"}


async def connector_on(
    redis: Redis, broker: QueueBroker, *, acks: ReplicaAcks | None = None,
    window: DedupeWindow | None = None,
) -> tuple[PushConnector[Note, Any], Lease]:
    config = ConnectorConfig(name="pushed", type="QUEUE", poll_interval_ms=50)
    lease = Lease(redis, "pushed", ttl_s=30)
    assert await lease.try_acquire()
    store = StateStore(redis, config, lease, clock=SystemClock(), acks=acks or ReplicaAcks())
    parts = PushParts(source=broker, item_id=lambda n: f"queue/{n.offset}", transformer=transform,
                      raw=lambda n: n.body, dedupe_key=lambda n: n.message_id,
                      window=window or DedupeWindow())
    connector = PushConnector(config=config, parts=parts, store=store, clock=SystemClock(),
                              logger=get_logger(connector="pushed"))
    return connector, lease


async def payload_values(redis: Redis) -> list[Any]:
    entries = await redis.xrange(STREAM)
    return [orjson.loads(fields["payload"])["value"] for _, fields in entries]


async def test_a_batch_is_in_the_stream_with_its_position_before_it_is_acknowledged(
    redis: Redis,
) -> None:
    broker = QueueBroker(redis)
    broker.publish(b'{"v": 1}', b'{"v": 2}', b'{"v": 3}')
    connector, _ = await connector_on(redis, broker)

    summary = await connector.poll()

    assert summary.published == 3
    assert await payload_values(redis) == [1, 2, 3]
    assert broker.stream_length_at_ack == [3]  # acknowledged after the append only
    state = await redis.hgetall("connector:state:pushed")
    assert orjson.loads(state["cursors"]) == {"queue": "3"}
    entry = (await redis.xrange(STREAM))[0][1]
    assert (entry["connector"], entry["type"], entry["item_id"], entry["version"]) == (
        "pushed", "QUEUE", "queue/0", "1")


async def test_a_message_that_is_not_an_event_is_kept_raw_and_never_stops_the_others(
    redis: Redis, redis_server: RedisServer,
) -> None:
    broker = QueueBroker(redis)
    broker.publish(b'{"v": 1}', b"\xff not json", b'{"v": 3}')
    connector, _ = await connector_on(redis, broker)

    summary = await connector.poll()
    await connector.poll()  # it does not come back

    assert (summary.published, summary.failed) == (2, 1)
    assert await payload_values(redis) == [1, 3]
    assert broker.acked == [0, 1, 2] and not broker.queue
    async with Redis.from_url(redis_server.url) as undecoded:
        [(_, rejected)] = await undecoded.xrange("connector:state:pushed:rejected")
    assert rejected[b"item_id"] == b"queue/1"
    assert rejected[b"error"].startswith(b"JSONDecodeError")
    assert rejected[b"raw"] == b"\xff not json"


async def test_a_redelivered_message_id_is_appended_once(redis: Redis) -> None:
    broker = QueueBroker(redis)
    broker.publish(b'{"v": 1}', b'{"v": 1}', b'{"v": 2}', ids=["m-1", "m-1", None])
    connector, _ = await connector_on(redis, broker)

    summary = await connector.poll()

    assert (summary.published, summary.skipped_unchanged) == (2, 1)
    assert await payload_values(redis) == [1, 2]


async def test_dedupe_keys_are_bounded_by_count(redis: Redis) -> None:
    broker = QueueBroker(redis)
    broker.publish(*[b'{"v": 0}'] * 5, ids=[f"m-{i}" for i in range(5)])
    connector, _ = await connector_on(redis, broker, window=DedupeWindow(max_keys=2))

    await connector.poll()

    assert await redis.zrange("connector:state:pushed:seen", 0, -1) == ["m-3", "m-4"]


async def test_a_lost_lease_appends_nothing_and_the_batch_goes_back_to_the_peer(
    redis: Redis,
) -> None:
    broker = QueueBroker(redis)
    broker.publish(b'{"v": 1}', b'{"v": 2}')
    connector, lease = await connector_on(redis, broker)
    await redis.set("lease:pushed", "another-instance")

    with pytest.raises(LeaseLostError):
        await connector.poll()

    assert await redis.xlen(STREAM) == 0
    assert broker.acked == [] and [n.offset for n in broker.queue] == [0, 1]
    # The lease comes back: the next window starts the source again and appends once.
    await redis.set("lease:pushed", lease.token)
    await connector.poll()
    assert await payload_values(redis) == [1, 2]
    assert broker.starts == [{}, {}]


async def test_the_source_resumes_after_the_positions_saved_with_the_last_append(
    redis: Redis,
) -> None:
    broker = QueueBroker(redis)
    broker.publish(b'{"v": 1}')
    first, _ = await connector_on(redis, broker)
    await first.poll()
    await first.aclose()
    await redis.delete("lease:pushed")  # the next instance takes over

    second, _ = await connector_on(redis, broker)
    await second.poll()

    assert broker.starts == [{}, {"queue": "1"}]


async def test_a_commit_the_replicas_did_not_acknowledge_is_not_acknowledged_to_the_peer(
    redis: Redis,
) -> None:
    broker = QueueBroker(redis)
    broker.publish(b'{"v": 1}')
    # A single server: no replica can acknowledge.
    connector, _ = await connector_on(redis, broker, acks=ReplicaAcks(replicas=1, timeout_ms=50))

    with pytest.raises(ReplicasNotAckedError):
        await connector.poll()

    assert broker.acked == [] and [n.offset for n in broker.queue] == [0]


def test_a_source_event_is_what_the_consumers_contract_reads() -> None:
    from datetime import UTC, datetime

    from framework.consuming.events import EventPayload
    from framework.polling import source_event

    event = source_event(source="mqtt", value=21.5, node_id="sensor-1", unit="C",
                         timestamp=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
                         metadata={"topic": "t/1"})
    parsed = EventPayload.model_validate_json(orjson.dumps(event))  # as it travels

    assert (parsed.source, parsed.value, parsed.nodeId, parsed.unit) == ("mqtt", 21.5, "sensor-1",
                                                                         "C")
    assert parsed.timestamp.tzinfo is not None and parsed.metadata == {"topic": "t/1"}
    with pytest.raises(ValueError, match="nodeId"):
        source_event(source="mqtt", value=1, node_id="")
