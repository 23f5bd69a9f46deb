"""``connector-run`` of an ``amqp-source`` killed with SIGKILL again and again while
messages flow: every message reaches the stream (at least once); with a
``message_id`` none is appended twice. And a broker restart mid-run."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import orjson
import pytest
import redis as sync_redis

from framework.testing import RabbitMqServer, RedisServer
from tests.process import ConnectorProcess, write_config
from tests.providers.amqp.helpers import declare

pytestmark = pytest.mark.slow  # real processes, kills and restarts: seconds per test

NAME = "orders-amqp"
KILLS = 8
PREFETCH = 50


class Publisher:
    """Publishes persistent, confirmed messages 0, 1, 2... from its own thread at a
    steady pace (again after a broker restart, then possibly twice: same id):
    ``count`` of them, or with ``count=None`` until :meth:`finish`."""

    def __init__(self, node: RabbitMqServer, queue: str, count: int | None, per_second: float,
                 *, with_ids: bool) -> None:
        self._node, self._queue, self._count = node, queue, count
        self._gap_s = 1 / per_second
        self._with_ids = with_ids
        self.sent = 0
        self._finish = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def _run(self) -> None:
        seq = 0
        deadline = time.monotonic() + 120
        while not self._done(seq) and time.monotonic() < deadline:
            try:
                async with await aio_pika.connect(self._node.url, timeout=5) as connection:
                    channel = await connection.channel(publisher_confirms=True)
                    while not self._done(seq):
                        body = orjson.dumps({"value": seq})
                        message = aio_pika.Message(
                            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=f"m-{seq}" if self._with_ids else None)
                        await channel.default_exchange.publish(message, routing_key=self._queue)
                        seq += 1
                        self.sent = seq
                        await asyncio.sleep(self._gap_s)
            except (aio_pika.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                    ConnectionError, OSError, TimeoutError):
                # the broker is restarting (a closed channel is a RuntimeError to aiormq):
                # publish the unconfirmed message again
                await asyncio.sleep(0.2)

    def _done(self, seq: int) -> bool:
        return seq == self._count or self._finish.is_set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert self._count is None or self.sent == self._count, (
            f"published only {self.sent} of {self._count}")

    def finish(self) -> int:
        """Stop publishing; how many were published."""
        self._finish.set()
        self.join(timeout_s=60)
        return self.sent


def amqp_entry(node: RabbitMqServer, queue: str) -> dict[str, Any]:
    return {"name": NAME, "type": "amqp-source", "pollIntervalMs": 500,
            "requestTimeoutMs": 5000, "leaseTtlSeconds": 2,
            "providerConfig": {"url": node.url, "queue": queue, "prefetch": PREFETCH}}


def values_in_stream(client: sync_redis.Redis) -> Counter[int]:
    return Counter(orjson.loads(fields["payload"])["value"]
                   for _, fields in client.xrange("raw-input-signals"))


def wait_for_all(client: sync_redis.Redis, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(values_in_stream(client)) < count and time.monotonic() < deadline:
        time.sleep(0.2)


# Eight connector processes started and killed, a RabbitMQ node: minutes on a busy machine.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("with_ids", [False, True], ids=["at-least-once", "message-ids"])
def test_sigkill_storm_while_messages_flow_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, rabbitmq: RabbitMqServer, with_ids: bool,
) -> None:
    queue = f"storm-{uuid.uuid4().hex[:8]}"
    asyncio.run(declare(rabbitmq, queue))
    config = write_config(tmp_path / "c.json", amqp_entry(rabbitmq, queue))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    rng = random.Random(20261203)
    publisher = Publisher(rabbitmq, queue, None, per_second=100, with_ids=with_ids)
    publisher.start()

    for round_number in range(KILLS):
        worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                  log=tmp_path / f"run-{round_number}.log")
        try:
            worker.wait_for("push_source_started", timeout_s=60)
            time.sleep(rng.uniform(0.1, 0.8))
            worker.signal(signal.SIGKILL)  # while messages flow: the publisher never waits
            worker.wait()
        finally:
            worker.close()
        client.delete(f"lease:{NAME}")  # as an operator would; the lease would expire anyway
    messages = publisher.finish()
    assert messages > 100

    final = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                             log=tmp_path / "final.log")
    try:
        final.wait_for("push_source_started", timeout_s=60)
        wait_for_all(client, messages)
        final.signal(signal.SIGTERM)
        assert final.wait(timeout_s=30) == 0
    finally:
        final.close()

    seen = values_in_stream(client)
    assert sorted(seen) == list(range(messages))  # nothing lost
    duplicates = sum(n - 1 for n in seen.values())
    print(f"{duplicates} duplicates after {KILLS} kills")
    if with_ids:
        assert duplicates == 0
    else:  # each kill may redeliver what was appended but not yet acknowledged
        assert duplicates <= KILLS * PREFETCH
    client.close()


def test_a_broker_restart_mid_run_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, rabbitmq: RabbitMqServer,
) -> None:
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    asyncio.run(declare(rabbitmq, queue))
    config = write_config(tmp_path / "c.json", amqp_entry(rabbitmq, queue))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "run.log")
    try:
        worker.wait_for("push_source_started", timeout_s=60)
        publisher = Publisher(rabbitmq, queue, 300, per_second=100, with_ids=True)
        publisher.start()
        time.sleep(1.0)
        rabbitmq.restart()  # ~15 s down: the connector reconnects, the publisher resends
        publisher.join(timeout_s=90)
        wait_for_all(client, 300)
        worker.wait_for("amqp_channel_closed", timeout_s=5)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout_s=30) == 0
    finally:
        worker.close()
    seen = values_in_stream(client)
    assert sorted(seen) == list(range(300))
    assert sum(n - 1 for n in seen.values()) == 0  # ids: a resent message is appended once
    client.close()
