"""Rotating the trusted keys of a running catalog (``Catalog.replace_trust``) on a real
Redis: a removed key's definitions stop resolving with a reason that says so, an added
key's resolve at once, with or without the watcher's in-memory copy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.connections import create_redis
from framework.core.errors import ExpiredKeyError, UntrustedKeyError
from framework.core.logs import get_logger
from framework.testing import RedisServer
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog
from tests.trust.test_catalog import valve

CATALOG_LOG = get_logger(test="catalog")


@pytest.fixture
async def operator(redis_server: RedisServer, redis: Redis, old_key: PrivateKey,
                   new_key: PrivateKey) -> AsyncIterator[Catalog]:
    """The operator's CLI (its own connection), which may sign with either key."""
    client = create_redis(redis_server.url)
    yield Catalog(client, TrustStore([old_key.public(), new_key.public()]),
                  clock=SystemClock(), logger=CATALOG_LOG)
    await client.aclose()


@pytest.fixture(params=["watching", "reading"])
async def executor(request: pytest.FixtureRequest, redis: Redis,
                   old_key: PrivateKey) -> AsyncIterator[Catalog]:
    """A running executor trusting the old key: with its watcher (what it read is kept
    in memory) and without (every resolve reads Redis)."""
    catalog = Catalog(redis, TrustStore([old_key.public()]), clock=SystemClock(),
                      logger=CATALOG_LOG)
    if request.param == "reading":
        yield catalog
        return
    task = asyncio.create_task(catalog.watch())
    await asyncio.wait_for(catalog.watching.wait(), timeout=5)
    yield catalog
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_definition_signed_by_a_removed_key_is_refused_saying_so(
    operator: Catalog, executor: Catalog, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    await operator.register(valve("1.0.0").signed_with(old_key))
    # Verified (and cached) with the old key before the rotation.
    assert (await executor.resolve("valve_control", "^1")).key_id == old_key.key_id

    change = executor.replace_trust(TrustStore([new_key.public()]))

    assert (change.added, change.removed, change.trusted) == (
        (new_key.key_id,), (old_key.key_id,), (new_key.key_id,))
    with pytest.raises(UntrustedKeyError) as refused:
        await executor.resolve("valve_control", "^1")
    assert str(refused.value).startswith(
        f"capability valve_control@1.0.0: refused: signed by key {old_key.key_id}, "
        "which is no longer trusted")
    # `catalog list` in the same process says the same.
    [entry] = await executor.entries()
    assert entry.problem is not None and "no longer trusted" in entry.problem


async def test_a_definition_signed_by_an_added_key_resolves_without_a_restart(
    operator: Catalog, executor: Catalog, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    await operator.register(valve("1.1.0").signed_with(new_key))
    with pytest.raises(UntrustedKeyError, match="which is not a trusted key"):
        await executor.resolve("valve_control", "^1")

    change = executor.replace_trust(TrustStore([old_key.public(), new_key.public()]))

    assert (change.added, change.removed) == ((new_key.key_id,), ())
    resolved = await executor.resolve("valve_control", "^1")
    assert (resolved.definition.version, resolved.key_id) == ("1.1.0", new_key.key_id)


async def test_a_rotation_moves_each_range_to_what_the_trusted_key_signed(
    operator: Catalog, executor: Catalog, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    # The procedure: trust the new key, publish re-signed versions, drop the old key.
    await operator.register(valve("1.0.0").signed_with(old_key))
    assert (await executor.resolve("valve_control", "^1")).definition.version == "1.0.0"
    executor.replace_trust(TrustStore([old_key.public(), new_key.public()]))
    await operator.register(valve("1.1.0").signed_with(new_key))
    await _until_version(executor, "^1", "1.1.0")

    executor.replace_trust(TrustStore([new_key.public()]))

    assert (await executor.resolve("valve_control", "^1")).key_id == new_key.key_id
    with pytest.raises(UntrustedKeyError, match="no longer trusted"):
        await executor.resolve("valve_control", "~1.0")


async def test_a_key_trusted_again_runs_its_definitions_again(
    operator: Catalog, executor: Catalog, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    await operator.register(valve("1.0.0").signed_with(old_key))
    executor.replace_trust(TrustStore([new_key.public()]))
    with pytest.raises(UntrustedKeyError, match="no longer trusted"):
        await executor.resolve("valve_control", "^1")

    change = executor.replace_trust(TrustStore([old_key.public()]))

    assert (change.added, change.removed) == ((old_key.key_id,), (new_key.key_id,))
    assert (await executor.resolve("valve_control", "^1")).key_id == old_key.key_id


async def test_a_new_expiry_of_a_kept_key_applies_to_what_was_verified_before(
    operator: Catalog, executor: Catalog, old_key: PrivateKey,
) -> None:
    await operator.register(valve("1.0.0").signed_with(old_key))
    await executor.resolve("valve_control", "^1")
    expired = datetime.now(tz=UTC) - timedelta(minutes=1)

    change = executor.replace_trust(TrustStore([old_key.public(expires_at=expired)]))

    assert (change.added, change.removed, change.changed) == ((), (), (old_key.key_id,))
    with pytest.raises(ExpiredKeyError, match=f"signing key {old_key.key_id} expired"):
        await executor.resolve("valve_control", "^1")


async def _until_version(catalog: Catalog, version_range: str, version: str) -> None:
    """A watching catalog sees another process's registration within the pub/sub delay."""
    async def wait() -> None:
        while True:
            resolved = await catalog.resolve("valve_control", version_range)
            if resolved.definition.version == version:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout=1.0)
