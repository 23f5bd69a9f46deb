"""Building the Redis client, and translating Redis failures into framework errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core.errors import RedisUnavailableError
from framework.core.redis_clients import create_redis, create_sync_redis

__all__ = [
    "UNAVAILABLE",
    "create_redis",
    "create_sync_redis",
    "grow_pool",
    "is_out_of_memory",
    "pool_size_for",
    "redis_failures",
]

# Transient failures: Redis is down, restarting, loading or failing over (a replica
# not yet promoted answers READONLY, Sentinel knows no master yet, a cluster slot is
# moving or its master is down). Each is retried with backoff by its caller.
UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes Sentinel's MasterNotFoundError
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.AskError,  # and MovedError
    redis_errors.TryAgainError,
    redis_errors.ClusterError,  # ClusterDownError, MasterDownError
    redis_errors.RedisClusterException,  # the cluster's slots cannot be read (yet)
    OSError,
)


# Redis connections one connector may hold at once: its poll (state, commit), its
# lease renewal, its metrics write and its subscription to the operator controls
# (held for good); plus a few for the ops API and reloads.
CONNECTIONS_PER_CONNECTOR = 4
SPARE_CONNECTIONS = 16


def pool_size_for(connectors: int) -> int:
    """The connection pool a process running ``connectors`` workers needs so that
    none of them is ever refused a connection ("Too many connections")."""
    return connectors * CONNECTIONS_PER_CONNECTOR + SPARE_CONNECTIONS


def grow_pool(redis: Redis, max_connections: int) -> int:
    """Raise the client's pool limit to at least ``max_connections`` (never lower it:
    connections in use stay valid); the limit now in force."""
    pool = getattr(redis, "connection_pool", None)
    if pool is None:  # a RedisCluster: a pool per node, sized when it was built
        return int(getattr(redis, "max_connections", max_connections))
    pool.max_connections = max(pool.max_connections, max_connections)
    return int(pool.max_connections)


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
    except (redis_errors.ClusterCrossSlotError, redis_errors.RedisClusterException) as exc:
        if not is_cross_slot(exc):
            raise RedisUnavailableError(describe_unavailable(exc), connector=connector) from exc
        raise RedisUnavailableError(
            "Redis Cluster refuses a command over keys in different slots (CROSSSLOT): "
            "this key layout is not cluster-ready yet", connector=connector) from exc
    except UNAVAILABLE as exc:
        raise RedisUnavailableError(describe_unavailable(exc), connector=connector) from exc
    except redis_errors.ResponseError as exc:
        if is_out_of_memory(exc):
            raise RedisUnavailableError(
                "Redis is out of memory (maxmemory reached); writes refused", connector=connector
            ) from exc
        raise


def is_cross_slot(exc: BaseException) -> bool:
    """A command over keys of several slots, refused by a cluster node (CROSSSLOT) or,
    before it is sent, by the cluster client: not transient, the keys must change."""
    return isinstance(exc, redis_errors.ClusterCrossSlotError) or (
        isinstance(exc, redis_errors.RedisClusterException) and "same key slot" in str(exc))


def describe_unavailable(exc: BaseException) -> str:
    """One line for a transient Redis failure; a MOVED answer to a single-server
    client means REDIS_URL points at a cluster node, which the line says."""
    line = f"Redis unavailable: {type(exc).__name__}: {exc}"
    if isinstance(exc, redis_errors.AskError) and not isinstance(
            exc, redis_errors.ClusterError):
        line += " (a cluster node: use redis+cluster:// or REDIS_CLUSTER=true)"
    return line
