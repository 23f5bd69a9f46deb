"""Building the Redis client, and translating Redis failures into framework errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from framework.core.errors import RedisUnavailableError

# Connection-level failures: Redis is down, restarting, failing over or loading.
UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    OSError,
)


def create_redis(url: str, *, client_name: str | None = None) -> Redis:
    """A client with bounded retries on connection errors and sane timeouts."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=15,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
        retry_on_error=[redis_errors.BusyLoadingError],
        client_name=client_name,
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write (or a transaction, or a script) because of maxmemory."""
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return True
    message = str(exc)
    return isinstance(exc, redis_errors.ResponseError) and (
        message.startswith("OOM") or "used memory > 'maxmemory'" in message
    )


@asynccontextmanager
async def redis_failures(connector: str | None = None) -> AsyncIterator[None]:
    """Turn "Redis is unavailable / out of memory" into :class:`RedisUnavailableError`."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise RedisUnavailableError(
            f"Redis unavailable: {type(exc).__name__}: {exc}", connector=connector
        ) from exc
    except redis_errors.ResponseError as exc:
        if is_out_of_memory(exc):
            raise RedisUnavailableError(
                "Redis is out of memory (maxmemory reached); writes refused", connector=connector
            ) from exc
        raise
