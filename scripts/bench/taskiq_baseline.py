"""taskiq peer: the no-op work as a taskiq task on taskiq-redis's ``RedisStreamBroker``
(a Redis stream read by a consumer group, each message acknowledged).

Run by ``connector-fleet bench consume`` with the taskiq virtualenv's Python
(``scripts/setup --bench``). One worker process (``taskiq worker --workers 1``)
running up to ``--max-in-flight`` tasks at once (``--max-async-tasks``), reading
as many per XREADGROUP (``xread_count``, block 100 ms as connector-fleet's reads),
acknowledging each message once its task has run (``--ack-type when_executed``,
as connector-fleet acknowledges after the work). The group starts at id 0, so
that the queued events of the throughput run are read.

The producer writes what ``kiq()`` sends (the task's message, built by taskiq's
kicker and formatter, XADDed as ``RedisStreamBroker.kick`` does) for all the tasks
due each millisecond in one pipeline: ``kiq()`` takes a round trip per task
(concurrent calls open a connection each) and cannot offer 10,000 tasks/s from
one process. No middleware is configured, so ``kiq()`` would do nothing more.
Building the messages takes over 100 microseconds each, so the producer runs in
``PRODUCERS`` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis
from taskiq_redis import RedisStreamBroker

sys.path.insert(0, str(Path(__file__).parent))
import _baseline

STREAM = "bench-taskiq"
_URL = os.environ.get("BENCH_REDIS_URL", "redis://")
_MAX_IN_FLIGHT = int(os.environ.get("BENCH_MAX_IN_FLIGHT", "64"))

broker = RedisStreamBroker(
    _URL,
    queue_name=STREAM,
    consumer_group_name="bench",
    consumer_id="0",
    xread_count=_MAX_IN_FLIGHT,
    xread_block=100,
)
_completions = _baseline.Completions(_URL)
PRODUCERS = 2


@broker.task(task_name="bench.noop")
async def noop(sent_ms: float) -> None:
    _completions.done(sent_ms)


def start_worker(url: str, max_in_flight: int) -> subprocess.Popen[bytes]:
    return _baseline.start_worker_process(
        [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "taskiq_baseline:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(max_in_flight),
            "--ack-type",
            "when_executed",
            "--log-level",
            "WARNING",
        ],
        {"BENCH_REDIS_URL": url, "BENCH_MAX_IN_FLIGHT": str(max_in_flight)},
    )


class Producer:
    def __init__(self, url: str) -> None:
        self._url = url
        self._client = redis.Redis.from_url(url)
        self._kicker = noop.kicker()

    def send_batch(self, count: int) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for _ in range(count):
                message = self._kicker._prepare_message(_baseline.now_ms())
                pipe.xadd(STREAM, {b"data": broker.formatter.dumps(message).message})
            pipe.execute()

    def queue(self, count: int) -> None:
        for offset in range(0, count, 1_000):
            self.send_batch(min(1_000, count - offset))

    def send(self, rate: int, duration_s: float) -> float:
        url = self._url
        return _baseline.paced_in_processes(
            rate, duration_s, PRODUCERS, lambda: Producer(url).send_batch
        )


def main() -> None:
    args = _baseline.parse_args("taskiq")
    if args.redis_url != _URL:  # the broker is built at import, from the environment
        os.environ["BENCH_REDIS_URL"] = args.redis_url
        os.environ["BENCH_MAX_IN_FLIGHT"] = str(args.max_in_flight)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    producer = Producer(args.redis_url)
    result = _baseline.run_modes(
        args,
        lambda: start_worker(args.redis_url, args.max_in_flight),
        producer.queue,
        producer.send,
        prepare=lambda client: client.xgroup_create(STREAM, "bench", id="0", mkstream=True),
    )
    _baseline.emit(result)


if __name__ == "__main__":
    main()
