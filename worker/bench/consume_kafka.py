"""The ``kafka_publish`` row of ``bench consume`` (a child process): the connector-fleet
worker of :mod:`worker.bench.consume_worker` with one rule publishing each event to
a Kafka topic (acks=all, keyed) on a private Tansu broker this process starts.

``python -m worker.bench.consume_kafka REDIS_URL MAX_IN_FLIGHT``; SIGTERM stops it.
"""

from __future__ import annotations

import sys
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from framework.consuming import CallPolicy, CapabilityRegistry
from framework.core import configure_logging
from framework.testing import TansuBroker
from providers.kafka import KafkaActions
from worker.bench.consume_worker import bench_rules, serve_rules
from worker.runtime import run_event_loop

TOPIC = "bench-out"


async def _create_topic(bootstrap: str) -> None:
    admin: Any = AIOKafkaAdminClient(bootstrap_servers=bootstrap)  # unannotated: held as Any
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 3, 1)])  # type: ignore[no-untyped-call]
    finally:
        await admin.close()


async def serve(url: str, max_in_flight: int, bootstrap: str) -> int:
    await _create_topic(bootstrap)
    actions = KafkaActions(policy=CallPolicy(max_retries=0))
    registry = CapabilityRegistry()
    for spec in actions.specs():
        registry.register(spec)
    rules = bench_rules("kafka_publish", {
        "brokers": [bootstrap], "topic": TOPIC, "key": "{{ payload.sent_ms }}",
        "value": {"sent_ms": "{{ payload.sent_ms }}"}})
    try:
        return await serve_rules(url, max_in_flight, registry, rules)
    finally:
        await actions.aclose()


def main(url: str, max_in_flight: int) -> int:
    with TansuBroker() as broker:
        return run_event_loop(serve(url, max_in_flight, broker.bootstrap))


if __name__ == "__main__":
    configure_logging("WARNING")
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
