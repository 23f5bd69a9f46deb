"""The connector-fleet worker of ``bench consume`` (a child process): built as
``connector-fleet consume`` builds it without a catalog (metrics included), one
rule calling one no-op capability, each event stamped when acknowledged.
``serve_rules`` runs the same consumer with another capability (the network
capabilities' rows, e.g. ``worker.bench.consume_kafka``).

``python -m worker.bench.consume_worker REDIS_URL MAX_IN_FLIGHT [CONSUMER]``; SIGTERM
stops it. Several processes with different CONSUMER names share the group, as
``connector-fleet consume --processes N`` runs them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from framework.consuming import (
    BreakerBoard,
    CallContext,
    CallMetrics,
    CapabilityRegistry,
    CapabilitySpec,
    Consumer,
    ConsumerMetrics,
    ConsumerOptions,
    Delivery,
    ExecutionDeps,
    RulesHandler,
    build_executor,
    parse_rules,
)
from framework.core import (
    Deadlines,
    SystemClock,
    cancel_and_wait,
    configure_logging,
    create_redis,
    get_logger,
)
from worker.bench.completions import Completions
from worker.bench.load import STREAM
from worker.runtime import freeze_startup_heap, run_event_loop


def bench_rules(capability_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """One rule calling ``capability_id`` once per bench event with ``params``."""
    return {
        "version": 1,
        "rules": [
            {
                "name": "bench",
                "match": {"streams": [STREAM], "type": "bench.tick"},
                "steps": [{"id": "call", "call": capability_id, "version": "^1",
                           "params": params}],
            }
        ],
    }


_RULES = bench_rules("bench_noop", {"sent_ms": "{{ payload.sent_ms }}"})


async def _noop(params: Any, context: CallContext) -> None:
    return None


def _stamp_when_settled(completions: Completions) -> Any:
    def settled(delivery: Delivery, outcome: str) -> None:
        # A dead letter is no completion: a failing capability never finishes the run.
        if outcome == "acked":
            completions.stamp(orjson.loads(delivery.fields["event"])["payload"]["sent_ms"])

    return settled


async def serve(url: str, max_in_flight: int, consumer_name: str = "bench-1") -> int:
    registry = CapabilityRegistry()
    registry.register(CapabilitySpec(id="bench_noop", version="1.0.0", handler=_noop, local=True))
    return await serve_rules(url, max_in_flight, registry, _RULES, consumer_name)


async def serve_rules(url: str, max_in_flight: int, registry: CapabilityRegistry,
                      rules: dict[str, Any], consumer_name: str = "bench-1") -> int:
    """Consume ``bench-events`` with ``rules`` over ``registry``'s capabilities until
    SIGTERM (``worker.bench.consume_actions`` and ``consume_kafka`` run the network
    capabilities so)."""
    redis = create_redis(url, client_name="bench-consumer")
    logger = get_logger(component="bench")
    prometheus = CollectorRegistry()
    clock, call_metrics = SystemClock(), CallMetrics.create(prometheus)
    executor = build_executor(
        registry,
        ExecutionDeps(
            redis=redis,
            clock=clock,
            logger=logger,
            deadlines=Deadlines(),
            breakers=BreakerBoard(
                redis=redis, clock=clock, logger=logger, gauge=call_metrics.breaker_state
            ),
            call_metrics=call_metrics,
        ),
    )
    handler = RulesHandler(parse_rules(rules), executor, redis=redis, logger=logger)
    completions = Completions(redis)
    consumer = Consumer(
        redis,
        handler,
        ConsumerOptions(
            streams=(STREAM,),
            max_in_flight=max_in_flight,
            start_id="0",
            consumer=consumer_name,
            block_ms=100,
        ),
        clock=SystemClock(),
        logger=logger,
        metrics=ConsumerMetrics.create(prometheus),
        on_settled=_stamp_when_settled(completions),
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consumer.stop)
    writer = asyncio.create_task(completions.write_forever())
    freeze_startup_heap()
    try:
        await consumer.run()
    finally:
        await cancel_and_wait(writer)
        await completions.write()
        await redis.aclose()
    return 0


if __name__ == "__main__":
    configure_logging("WARNING")
    sys.exit(run_event_loop(serve(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])))
