"""The context a bench connector runs in: its lease held, and nothing an earlier run
on the same Redis left (lease, state and the state's side keys) to resume from."""

from __future__ import annotations

from redis.asyncio import Redis

from framework.core import SystemClock, get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore


async def fresh_connector_context(redis: Redis, config: ConnectorConfig,
                                  state_suffixes: tuple[str, ...] = ()) -> ConnectorContext:
    """Deletes ``config``'s lease and state (``connector:state:<name>`` and each
    ``connector:state:<name><suffix>``), takes the lease and returns the context.
    Raises AssertionError when the lease is held elsewhere: a bench must run alone."""
    state = f"connector:state:{config.name}"
    await redis.delete(f"lease:{config.name}", state,
                       *(state + suffix for suffix in state_suffixes))
    lease = Lease(redis, config.name, ttl_s=300)
    assert await lease.try_acquire(), f"{config.name}: the lease is held by another run"
    clock = SystemClock()
    return ConnectorContext(store=StateStore(redis, config, lease, clock=clock), clock=clock,
                            logger=get_logger(connector=config.name))
