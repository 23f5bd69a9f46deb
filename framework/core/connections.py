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


# Redis connections one connector may hold at once: its poll (state, commit), its
# lease renewal and its metrics write; plus a few for the ops API and reloads.
CONNECTIONS_PER_CONNECTOR = 3
SPARE_CONNECTIONS = 16


def pool_size_for(connectors: int) -> int:
    """The connection pool a process running ``connectors`` workers needs so that
    none of them is ever refused a connection ("Too many connections")."""
    return connectors * CONNECTIONS_PER_CONNECTOR + SPARE_CONNECTIONS


def grow_pool(redis: Redis, max_connections: int) -> int:
    """Raise the client's pool limit to at least ``max_connections`` (never lower it:
    connections in use stay valid); the limit now in force."""
    pool = redis.connection_pool
    pool.max_connections = max(pool.max_connections, max_connections)
    return pool.max_connections


def create_redis(
    url: str, *, client_name: str | None = None, max_connections: int | None = None
) -> Redis:
    """A client with bounded retries on connection errors and sane timeouts.
    ``max_connections``: the pool's limit (redis-py's default, 100, when None)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=15,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
        retry_on_error=[redis_errors.BusyLoadingError],
        client_name=client_name,
        max_connections=max_connections,
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
