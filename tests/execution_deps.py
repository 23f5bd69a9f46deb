"""The process's shared execution pieces, as a test process builds them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming import BreakerBoard, CallMetrics, ExecutionDeps
from framework.core import Clock, Deadlines, get_logger


def execution_deps(redis: Redis, clock: Clock,
                   prometheus: CollectorRegistry | None = None) -> ExecutionDeps:
    """One breaker board and one deadline timer set; calls measured into ``prometheus``."""
    logger = get_logger(test="execution")
    call_metrics = CallMetrics.create(prometheus) if prometheus is not None else None
    breakers = BreakerBoard(redis=redis, clock=clock, logger=logger,
                            gauge=call_metrics.breaker_state if call_metrics else None)
    return ExecutionDeps(redis=redis, clock=clock, logger=logger, breakers=breakers,
                         deadlines=Deadlines(), call_metrics=call_metrics)
