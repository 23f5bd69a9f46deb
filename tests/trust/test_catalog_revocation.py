"""Revocation: recorded in Redis, broadcast to every running catalog, honoured after
a restart, lifted for a range only by registering a newer version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.connections import create_redis
from framework.core.errors import (
    CatalogError,
    InvalidDefinitionError,
    RevokedCapabilityError,
    UnknownCapabilityError,
)
from framework.core.keys import CATALOG_CHANGES_CHANNEL, catalog_revocations_key
from framework.core.logs import get_logger
from framework.testing import RedisServer
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, VerifiedCapability
from tests.trust.test_catalog import valve

CATALOG_LOG = get_logger(test="catalog")

REASON = "Correctif sécurité CVE-2024-XXXX"


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def trust(key: PrivateKey) -> TrustStore:
    return TrustStore([key.public()])


@pytest.fixture
async def operator(redis_server: RedisServer, redis: Redis,
                   trust: TrustStore) -> AsyncIterator[Catalog]:
    """The operator's CLI: another process, with its own connection."""
    client = create_redis(redis_server.url)
    yield Catalog(client, trust, clock=SystemClock(), logger=CATALOG_LOG)
    await client.aclose()


@pytest.fixture
async def executor(redis: Redis, trust: TrustStore) -> AsyncIterator[Catalog]:
    """A running executor's catalog, with its watcher."""
    catalog = Catalog(redis, trust, clock=SystemClock(), logger=CATALOG_LOG)
    task = asyncio.create_task(catalog.watch())
    await asyncio.wait_for(catalog.watching.wait(), timeout=5)
    yield catalog
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _until_resolved(catalog: Catalog, version_range: str,
                          version: str) -> VerifiedCapability:
    while True:
        try:
            resolved = await catalog.resolve("valve_control", version_range)
        except RevokedCapabilityError:
            resolved = None
        if resolved is not None and resolved.definition.version == version:
            return resolved
        await asyncio.sleep(0.01)


async def _until_revoked(catalog: Catalog, version_range: str) -> RevokedCapabilityError:
    while True:
        try:
            await catalog.resolve("valve_control", version_range)
        except RevokedCapabilityError as exc:
            return exc
        await asyncio.sleep(0.01)


async def test_a_revocation_reaches_a_running_executor_within_a_second(
    operator: Catalog, executor: Catalog, key: PrivateKey
) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    # The executor has resolved (and cached) 1.0.0 before the revocation.
    assert (await executor.resolve("valve_control", "~1.0")).definition.version == "1.0.0"
    assert (await executor.resolve("valve_control", "~1.0")).definition.version == "1.0.0"

    revocation = await operator.revoke("valve_control", "<1.1.0", REASON)
    assert revocation.versions == ("1.0.0",)
    refused = await asyncio.wait_for(_until_revoked(executor, "~1.0"), timeout=1.0)
    assert refused.reason == REASON
    assert "valve_control@1.0.0" in str(refused) and REASON in str(refused)
    assert executor.revocations_applied == 1

    # A newer version lifts it for ranges that reach the new one.
    await operator.register(valve("1.1.0").signed_with(key))
    resolved = await asyncio.wait_for(_until_resolved(executor, "^1.0", "1.1.0"), timeout=1.0)
    assert resolved.key_id == key.key_id
    with pytest.raises(RevokedCapabilityError):
        await executor.resolve("valve_control", "~1.0")


async def test_a_revocation_skips_to_the_newest_version_not_revoked(
    operator: Catalog, executor: Catalog, key: PrivateKey
) -> None:
    for version in ("1.0.0", "1.0.1", "1.1.0"):
        await operator.register(valve(version).signed_with(key))
    assert (await executor.resolve("valve_control", "^1")).definition.version == "1.1.0"
    await operator.revoke("valve_control", ">=1.1.0", "bad read-back")
    resolved = await asyncio.wait_for(_until_resolved(executor, "^1", "1.0.1"), timeout=1.0)
    assert resolved.definition.version == "1.0.1"


async def test_stored_revocations_are_honoured_after_a_restart(
    redis_server: RedisServer, operator: Catalog, trust: TrustStore, key: PrivateKey
) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    await operator.revoke("valve_control", "<1.1.0", REASON)
    # A process that starts after the broadcast never saw it.
    client = create_redis(redis_server.url)
    try:
        restarted = Catalog(client, trust, clock=SystemClock(), logger=CATALOG_LOG)
        with pytest.raises(RevokedCapabilityError, match="CVE-2024-XXXX"):
            await restarted.resolve("valve_control", "^1")
        watching = asyncio.create_task(restarted.watch())
        await asyncio.wait_for(restarted.watching.wait(), timeout=5)
        with pytest.raises(RevokedCapabilityError):
            await restarted.resolve("valve_control", "^1")
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
    finally:
        await client.aclose()


async def test_a_version_inside_a_revoked_range_cannot_be_registered(
    operator: Catalog, key: PrivateKey
) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    await operator.revoke("valve_control", "<1.1.0", REASON)
    with pytest.raises(RevokedCapabilityError, match=r"valve_control@1\.0\.5: revoked"):
        await operator.register(valve("1.0.5").signed_with(key))


async def test_a_revocation_missed_while_the_subscription_was_down_still_applies(
    redis: Redis, operator: Catalog, executor: Catalog, key: PrivateKey
) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    await executor.resolve("valve_control", "^1")
    # Cut the watcher's connection; the revocation is published while it is down.
    await redis.client_kill_filter(_type="pubsub")
    await operator.revoke("valve_control", "<2", REASON)
    refused = await asyncio.wait_for(_until_revoked(executor, "^1"), timeout=5)
    assert refused.reason == REASON
    await asyncio.wait_for(executor.watching.wait(), timeout=5)
    await operator.register(valve("2.0.0").signed_with(key))
    await asyncio.wait_for(_until_resolved(executor, "*", "2.0.0"), timeout=1.0)


async def test_an_unreadable_change_message_makes_the_watcher_forget_everything(
    redis: Redis, operator: Catalog, executor: Catalog, key: PrivateKey
) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    await executor.resolve("valve_control")
    await redis.publish(CATALOG_CHANGES_CHANNEL, "not json")
    await operator.revoke("valve_control", "1.0.0", REASON)
    await asyncio.wait_for(_until_revoked(executor, "*"), timeout=1.0)
    assert executor.watching.is_set()


async def test_revoking_an_unknown_capability_is_refused(operator: Catalog) -> None:
    with pytest.raises(UnknownCapabilityError, match="pump_control"):
        await operator.revoke("pump_control", "*", REASON)


async def test_a_revocation_needs_a_reason(operator: Catalog, key: PrivateKey) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    with pytest.raises(CatalogError, match="needs a reason"):
        await operator.revoke("valve_control", "*", "  ")


async def test_entries_show_the_revocation_of_each_version(
    operator: Catalog, key: PrivateKey
) -> None:
    await operator.register(valve("1.0.0").signed_with(key))
    await operator.register(valve("1.1.0").signed_with(key))
    await operator.revoke("valve_control", "<1.1.0", REASON)
    entries = {e.version: e for e in await operator.entries()}
    assert entries["1.0.0"].revocation is not None
    assert entries["1.0.0"].revocation.reason == REASON
    assert entries["1.1.0"].revocation is None


async def test_an_unreadable_stored_revocation_stops_the_capability(
    redis: Redis, operator: Catalog, key: PrivateKey
) -> None:
    await operator.register(valve("1.1.0").signed_with(key))
    await redis.hset(catalog_revocations_key("valve_control"), "<1.1.0", "{garbled")
    with pytest.raises(InvalidDefinitionError,
                       match=r"catalog:revocations:valve_control\[<1\.1\.0\]: unreadable"):
        await operator.resolve("valve_control", "^1")
    entries = await operator.entries()
    assert [(e.version, "unreadable revocation" in str(e.problem)) for e in entries] == [
        ("*", True)]
