"""FastStream peer: the no-op work as a handler of FastStream's Redis Streams
subscriber (``RedisBroker`` with ``StreamSub``, a consumer group).

Run by ``connector-fleet bench consume`` with the FastStream virtualenv's Python
(``scripts/setup --bench``). One worker process; the subscriber reads up to
``--max-in-flight`` entries per XREADGROUP (``max_records``, block 100 ms as
connector-fleet's reads) and runs up to as many handlers at once
(``max_workers``); FastStream acknowledges each entry after its handler. The
producer publishes through ``RedisBroker.publish(..., pipeline=...)``: what is due
each millisecond in one pipeline. The group is created at id 0 before anything is
sent, so that the queued events of the throughput run are read.

``python faststream_baseline.py --worker URL MAX_IN_FLIGHT`` is the worker itself.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))
import _baseline

STREAM = "bench-faststream"
GROUP = "bench"


async def serve(url: str, max_in_flight: int) -> None:
    completions = _baseline.Completions(url)
    # No access log: FastStream logs every message at INFO by default; the other
    # systems run at WARNING.
    broker = RedisBroker(url, logger=None)

    async def noop(body: dict[str, Any]) -> None:
        completions.done(body["sent_ms"])

    broker.subscriber(
        stream=StreamSub(
            STREAM, group=GROUP, consumer="bench-1", max_records=max_in_flight, polling_interval=100
        ),
        **({"max_workers": max_in_flight} if max_in_flight > 1 else {}),
    )(noop)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await broker.start()
    await stopping.wait()
    await broker.stop()


def start_worker(url: str, max_in_flight: int) -> subprocess.Popen[bytes]:
    return _baseline.start_worker_process(
        [sys.executable, __file__, "--worker", url, str(max_in_flight)], {}
    )


def create_group(client: redis.Redis) -> None:
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)


class Producer:
    def __init__(self, url: str) -> None:
        self._url = url
        self._loop = asyncio.new_event_loop()
        self._broker = RedisBroker(url, logger=None)
        self._client = Redis.from_url(url)
        self._loop.run_until_complete(self._broker.connect())

    async def _send_batch(self, count: int) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for _ in range(count):
                await self._broker.publish(
                    {"sent_ms": _baseline.now_ms()}, stream=STREAM, pipeline=pipe
                )
            await pipe.execute()

    def queue(self, count: int) -> None:
        for offset in range(0, count, 1_000):
            self._loop.run_until_complete(self._send_batch(min(1_000, count - offset)))

    def send(self, rate: int, duration_s: float) -> float:
        return self._loop.run_until_complete(
            _baseline.paced_async(rate, duration_s, self._send_batch)
        )


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
        return
    args = _baseline.parse_args("faststream")
    producer = Producer(args.redis_url)
    result = _baseline.run_modes(
        args,
        lambda: start_worker(args.redis_url, args.max_in_flight),
        producer.queue,
        producer.send,
        prepare=create_group,
    )
    _baseline.emit(result)


if __name__ == "__main__":
    main()
