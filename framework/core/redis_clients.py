"""The one factory of Redis clients: a URL in, the client its mode needs out.

``redis://`` (or ``rediss://``, ``unix://``): one server. ``redis+sentinel://``: the
master that the Sentinels name, found again after each failover (a connection to
a demoted master is dropped and the Sentinels asked anew). ``redis+cluster://``:
a cluster client that follows MOVED/ASK and re-reads the slots when a master
fails. Every client has bounded retries with jittered backoff and the same
timeouts; callers translate what still fails (framework.core.connections). A
single server's commands are packed by hiredis (framework.core.command_packing).
"""

from __future__ import annotations

from typing import Any, cast

import redis as sync_redis
import redis.cluster as sync_cluster
import redis.sentinel as sync_sentinel
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio import cluster as async_cluster
from redis.asyncio import sentinel as async_sentinel
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry as SyncRetry

from framework.core.command_packing import pack_with_hiredis
from framework.core.redis_target import RedisTarget, parse_redis_target

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 10.0
# The Sentinels are asked in turn, each once (redis-py's default would retry each one
# with up to 10 s of backoff): the data connection's own retries ask them all again.
SENTINEL_RETRIES = 0
# A cluster client keeps a pool per node; redis-py's per-node default (100) is kept,
# like the single-server pool, and grown by nothing (see grow_pool).
CLUSTER_MAX_CONNECTIONS_PER_NODE = 100


class SentinelMasterRedis(Redis):
    """The Sentinel-managed master's client; ``aclose`` also closes the clients
    that ask the Sentinels, which would otherwise leak their sockets."""

    sentinel_clients: tuple[Redis, ...] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for client in self.sentinel_clients:
            await client.aclose()


class SyncSentinelMasterRedis(sync_redis.Redis):
    """As :class:`SentinelMasterRedis`, for the threads that use a blocking client."""

    sentinel_clients: tuple[sync_redis.Redis, ...] = ()

    def close(self) -> None:
        super().close()
        for client in self.sentinel_clients:
            client.close()


def _short_master_error(
    service_name: str, exc: redis_errors.ConnectionError
) -> redis_errors.ConnectionError:
    """redis-py's message lists the repr of every Sentinel client (kilobytes); one
    line instead, saying whether the Sentinels did not answer or knew no master."""
    unreachable = str(exc).count(" - ")
    why = (
        f"{unreachable} Sentinel(s) did not answer"
        if unreachable
        else "the Sentinels know no master that is up"
    )
    kind = type(exc)  # the async module has a MasterNotFoundError of its own
    return kind(f"No master found for {service_name!r} ({why})")


class OneLineSentinel(async_sentinel.Sentinel):
    """A Sentinel whose "No master found" fits on one line."""

    async def discover_master(self, service_name: str) -> Any:
        try:
            return await super().discover_master(service_name)
        except async_sentinel.MasterNotFoundError as exc:
            raise _short_master_error(service_name, exc) from None


class SyncOneLineSentinel(sync_sentinel.Sentinel):
    """The blocking twin of :class:`OneLineSentinel`."""

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)  # type: ignore[no-untyped-call]
        except sync_sentinel.MasterNotFoundError as exc:
            raise _short_master_error(service_name, exc) from None


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.05, cap=1.0)


def _common(target: RedisTarget, client_name: str | None) -> dict[str, Any]:
    """The options every data connection of ``target`` gets (not the Sentinels')."""
    return {
        "decode_responses": True,
        "client_name": client_name,
        "username": target.username,
        "password": target.password,
        "ssl": target.tls,
    }


def create_redis(
    url: str, *, client_name: str | None = None, max_connections: int | None = None
) -> Redis:
    """A client for ``url`` in its mode, with bounded retries on connection errors and
    sane timeouts. ``max_connections``: the pool's limit (redis-py's default, 100, when
    None). A cluster client is returned as a Redis: it offers the same commands."""
    target = parse_redis_target(url)
    retry = Retry(_backoff(), retries=3)
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
    }
    if target.mode == "single":
        client = Redis.from_url(
            url,
            decode_responses=True,
            **timeouts,
            health_check_interval=15,
            retry=retry,
            retry_on_error=[redis_errors.BusyLoadingError],
            client_name=client_name,
            max_connections=max_connections,
        )
        pack_with_hiredis(client.connection_pool)
        return client
    if target.mode == "sentinel":
        sentinel = OneLineSentinel(  # type: ignore[no-untyped-call]  # untyped upstream
            target.hosts,
            sentinel_kwargs={
                **timeouts,
                "decode_responses": True,
                "retry": Retry(_backoff(), SENTINEL_RETRIES),
            },
            **timeouts,
            retry=retry,
            retry_on_error=[redis_errors.BusyLoadingError],
            db=target.db,
            **_common(target, client_name),
        )
        master = cast(
            SentinelMasterRedis,
            sentinel.master_for(
                target.service_name,
                redis_class=SentinelMasterRedis,
                max_connections=max_connections or 100,
            ),
        )
        master.sentinel_clients = tuple(sentinel.sentinels)
        return master
    cluster = async_cluster.RedisCluster(
        startup_nodes=[async_cluster.ClusterNode(host, port) for host, port in target.hosts],
        **timeouts,
        retry=retry,
        max_connections=CLUSTER_MAX_CONNECTIONS_PER_NODE,
        **_common(target, client_name),
    )
    return cast(Redis, cluster)


def create_sync_redis(
    url: str, *, client_name: str | None = None, socket_timeout_s: float = SOCKET_TIMEOUT_S
) -> sync_redis.Redis:
    """The blocking twin of :func:`create_redis`, for work on its own thread."""
    target = parse_redis_target(url)
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": min(CONNECT_TIMEOUT_S, socket_timeout_s),
        "socket_timeout": socket_timeout_s,
    }
    if target.mode == "single":
        return sync_redis.Redis.from_url(
            url, decode_responses=True, client_name=client_name, **timeouts
        )
    if target.mode == "sentinel":
        sentinel = SyncOneLineSentinel(  # type: ignore[no-untyped-call]  # untyped upstream
            target.hosts,
            sentinel_kwargs={
                **timeouts,
                "decode_responses": True,
                "retry": SyncRetry(_backoff(), 0),
            },
            **timeouts,
            db=target.db,
            **_common(target, client_name),
        )
        master = cast(
            SyncSentinelMasterRedis,
            sentinel.master_for(  # type: ignore[no-untyped-call]
                target.service_name, redis_class=SyncSentinelMasterRedis
            ),
        )  # (untyped upstream)
        master.sentinel_clients = tuple(sentinel.sentinels)
        return master
    cluster = sync_cluster.RedisCluster(
        startup_nodes=[_sync_node(host, port) for host, port in target.hosts],
        **timeouts,
        retry=SyncRetry(_backoff(), retries=3),
        **_common(target, client_name),
    )
    return cast(sync_redis.Redis, cluster)


def _sync_node(host: str, port: int) -> sync_cluster.ClusterNode:
    return sync_cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]  # untyped upstream
