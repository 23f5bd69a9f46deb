"""The named runtime shared by the long-running processes: a ``Service`` run by
``run_service`` on one frozen ``Runtime`` of dependencies."""

from worker.runtime.dependencies import Runtime
from worker.runtime.process import load_settings, run_event_loop
from worker.runtime.redis import resolve_redis_url
from worker.runtime.service import (
    BuildService,
    Service,
    freeze_startup_heap,
    remembered,
    run_service,
)

__all__ = [
    "BuildService",
    "Runtime",
    "Service",
    "freeze_startup_heap",
    "load_settings",
    "remembered",
    "resolve_redis_url",
    "run_event_loop",
    "run_service",
]
