"""Newer catalog versions that cannot be trusted are skipped and audited, once per
version (issue 13 item 11d): real Redis, the real audit chain."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.keys import catalog_definitions_key
from framework.core.logs import get_logger
from framework.trust.audit.chain import AuditChain, AuditRecord
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import CapabilityDefinition, Catalog

LOG = get_logger(test="catalog-skips")


def echo(version: str) -> CapabilityDefinition:
    return CapabilityDefinition(id="echo", version=version, sector="IOT", handler="log")


async def store_as_is(redis: Redis, definition: CapabilityDefinition) -> None:
    """A version written to Redis by someone who bypassed ``register`` (which refuses it)."""
    await redis.hset(
        catalog_definitions_key(definition.id), definition.version, definition.to_json().decode()
    )


async def skipped(audit: AuditChain) -> list[AuditRecord]:
    return [record async for record in audit.records(kind="skipped")]


async def test_newer_unsigned_and_badly_signed_versions_are_audited_once_each(redis: Redis) -> None:
    key, stranger = PrivateKey.generate(), PrivateKey.generate()
    trust = TrustStore([key.public()])
    audit = AuditChain(redis, clock=SystemClock())
    catalog = Catalog(redis, trust, clock=SystemClock(), logger=LOG, audit=audit)
    await catalog.register(echo("1.0.0").signed_with(key))
    await store_as_is(redis, echo("1.1.0"))  # unsigned
    await store_as_is(redis, echo("1.2.0").signed_with(stranger))  # untrusted key
    tampered = echo("1.3.0").signed_with(key).model_copy(update={"handler": "emit_event"})
    await store_as_is(redis, tampered)  # changed after signing

    for _ in range(3):
        assert (await catalog.resolve("echo", "^1")).definition.version == "1.0.0"
    # Another process of the fleet looks the same versions up: no second record.
    other = Catalog(redis, trust, clock=SystemClock(), logger=LOG, audit=audit)
    assert (await other.resolve("echo")).definition.version == "1.0.0"

    records = await skipped(audit)
    assert sorted((r.body["capability"], r.body["version"], r.body["error"]) for r in records) == [
        ("echo", "1.1.0", "UnsignedCapabilityError"),
        ("echo", "1.2.0", "UntrustedKeyError"),
        ("echo", "1.3.0", "SignatureMismatchError"),
    ]
    for record in records:
        assert f"echo@{record.body['version']}: refused" in record.body["reason"]
        assert len(record.body["definitionHash"]) == 64
    assert (await audit.verify()).ok


async def test_a_version_changed_again_in_redis_is_audited_again(redis: Redis) -> None:
    key = PrivateKey.generate()
    audit = AuditChain(redis, clock=SystemClock())
    catalog = Catalog(
        redis, TrustStore([key.public()]), clock=SystemClock(), logger=LOG, audit=audit
    )
    await catalog.register(echo("1.0.0").signed_with(key))
    await store_as_is(redis, echo("1.1.0"))
    await catalog.resolve("echo")
    changed = echo("1.1.0").model_copy(update={"description": "again"})
    await store_as_is(redis, changed)
    await catalog.resolve("echo")
    await catalog.resolve("echo")
    hashes = [record.body["definitionHash"] for record in await skipped(audit)]
    assert len(hashes) == 2 and hashes[0] != hashes[1]
    stored = await redis.hget(catalog_definitions_key("echo"), "1.1.0")
    assert orjson.loads(stored)["description"] == "again"
