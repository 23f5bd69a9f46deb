"""The capability catalog on a real Redis: definitions, registration, resolution,
signature refusals, the verification cache."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.errors import (
    CatalogError,
    ExpiredKeyError,
    InvalidDefinitionError,
    SignatureMismatchError,
    UnknownCapabilityError,
    UnsignedCapabilityError,
    UntrustedKeyError,
)
from framework.core.keys import catalog_definitions_key
from framework.core.logs import get_logger
from framework.testing import FakeClock
from framework.trust.catalog.signing import PrivateKey, SignatureCheck, TrustStore
from framework.trust.catalog.store import (
    CapabilityDefinition,
    Catalog,
    RollbackAction,
    parse_definition,
)
from tests.conftest import FIXTURES

CATALOG_LOG = get_logger(test="catalog")

CATALOG_FIXTURES = FIXTURES / "catalog"


def load_fixture(name: str) -> CapabilityDefinition:
    path = CATALOG_FIXTURES / name
    return parse_definition(path.read_bytes(), source=str(path))


def valve(version: str) -> CapabilityDefinition:
    """The seed's valve_control at ``version`` (1.1.0's body, renumbered)."""
    base = load_fixture("valve_control_v1.1.0.json")
    return base.model_copy(update={"version": version, "handler": f"valve_control@{version}"})


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def catalog(redis: Redis, key: PrivateKey) -> Catalog:
    return Catalog(redis, TrustStore([key.public()]), clock=SystemClock(), logger=CATALOG_LOG)


# -- definitions ------------------------------------------------------------------------


def test_the_seed_example_definitions_parse() -> None:
    newer = load_fixture("valve_control_v1.1.0.json")
    older = load_fixture("valve_control_v1.0.0.json")
    assert (newer.key, newer.sector, older.key) == (
        "valve_control@1.1.0", "INDUSTRIAL", "valve_control@1.0.0")
    assert isinstance(newer.rollback_strategy, RollbackAction)
    assert newer.rollback_strategy.alert_on_rollback is True
    assert newer.postconditions[0].timeout_ms == 5000
    assert older.rollback_strategy == "none"


def test_a_definition_survives_a_json_round_trip() -> None:
    definition = load_fixture("valve_control_v1.1.0.json")
    assert parse_definition(definition.to_json(), source="again") == definition


@pytest.mark.parametrize(
    ("change", "problem"),
    [({"extra": 1}, "extra: Extra inputs are not permitted"),
     ({"sector": "SPACE"}, "sector: Input should be 'INDUSTRIAL'"),
     ({"version": "1.1"}, "version: .*invalid version '1.1'"),
     ({"id": "9lives"}, "id: .*must start with a letter"),
     ({"handler": ""}, "handler: String should have at least 1 character"),
     ({"preconditions": [{"check": "state.open =="}]}, "preconditions.0.check: .*syntax error"),
     ({"postconditions": [{"check": "x", "timeoutMs": "30000"}]},
      "postconditions.0.timeoutMs: Input should be a valid integer"),
     ({"postconditions": [{"check": "x", "timeout": 1}]}, "postconditions.0.timeout: Extra"),
     ({"rollbackStrategy": "sometimes"}, "rollbackStrategy"),
     ({"rollbackStrategy": {"action": "x", "versionRange": "^nope"}},
      "rollbackStrategy.*versionRange.*invalid version"),
     ({"description": 5}, "description: Input should be a valid string")],
)
def test_an_invalid_definition_names_the_file_and_the_field(
    change: dict[str, Any], problem: str
) -> None:
    raw = orjson.loads((CATALOG_FIXTURES / "valve_control_v1.1.0.json").read_bytes())
    raw.update(change)
    with pytest.raises(InvalidDefinitionError, match=problem) as caught:
        parse_definition(raw, source="defs/valve.json")
    assert str(caught.value).startswith("defs/valve.json: invalid capability definition")


def test_a_definition_missing_fields_lists_every_one() -> None:
    with pytest.raises(InvalidDefinitionError) as caught:
        parse_definition(b'{"id": "valve_control"}', source="v.json")
    for name in ("version", "sector", "handler"):
        assert f"{name}: Field required" in str(caught.value)


@pytest.mark.parametrize(("data", "problem"), [(b"{not json", "not valid JSON"),
                                               (b"[1, 2]", "expected a JSON object")])
def test_a_file_that_is_not_a_definition_is_refused_naming_it(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidDefinitionError, match=f"v.json: {problem}"):
        parse_definition(data, source="v.json")


# -- register and resolve ---------------------------------------------------------------


async def test_a_signed_definition_registers_and_resolves(
    catalog: Catalog, key: PrivateKey
) -> None:
    signed = valve("1.1.0").signed_with(key)
    registered = await catalog.register(signed)
    resolved = await catalog.resolve("valve_control", "^1.1")
    assert resolved.definition == signed
    assert resolved.key_id == registered.key_id == key.key_id
    assert resolved.definition_hash == registered.definition_hash


async def test_registration_refuses_an_unsigned_definition(catalog: Catalog,
                                                           redis: Redis) -> None:
    with pytest.raises(UnsignedCapabilityError, match="valve_control@1.1.0"):
        await catalog.register(valve("1.1.0"))
    assert await redis.exists(catalog_definitions_key("valve_control")) == 0


async def test_registration_refuses_a_key_that_is_not_trusted(catalog: Catalog,
                                                              redis: Redis) -> None:
    stranger = PrivateKey.generate()
    with pytest.raises(UntrustedKeyError, match=stranger.key_id):
        await catalog.register(valve("1.1.0").signed_with(stranger))
    assert await redis.exists(catalog_definitions_key("valve_control")) == 0


async def test_registration_refuses_a_definition_changed_after_signing(
    catalog: Catalog, key: PrivateKey
) -> None:
    signed = valve("1.1.0").signed_with(key)
    changed = signed.model_copy(update={"handler": "evil@1.0.0"})
    with pytest.raises(SignatureMismatchError, match="changed after signing"):
        await catalog.register(changed)


async def test_registering_the_same_definition_twice_is_harmless(
    catalog: Catalog, key: PrivateKey
) -> None:
    signed = valve("1.1.0").signed_with(key)
    await catalog.register(signed)
    await catalog.register(signed)
    assert (await catalog.resolve("valve_control", "1.1.0")).definition == signed


async def test_a_registered_version_is_not_silently_replaced(
    catalog: Catalog, key: PrivateKey
) -> None:
    await catalog.register(valve("1.1.0").signed_with(key))
    other = valve("1.1.0").model_copy(update={"description": "other"}).signed_with(key)
    with pytest.raises(InvalidDefinitionError, match="already registered"):
        await catalog.register(other)
    await catalog.register(other, replace=True)
    assert (await catalog.resolve("valve_control")).definition.description == "other"


async def test_resolve_picks_the_newest_version_in_the_range(
    catalog: Catalog, key: PrivateKey
) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "1.10.1"):
        await catalog.register(valve(version).signed_with(key))
    expected = {"^1.1": "1.10.1", ">=1.0,<1.2": "1.1.0", "<1.1.0": "1.0.0", None: "2.0.0",
                "*": "2.0.0", "1.2.0": "1.2.0", "~1.1": "1.1.0"}
    for version_range, version in expected.items():
        resolved = await catalog.resolve("valve_control", version_range)
        assert resolved.definition.version == version, version_range


async def test_resolve_names_what_is_registered_when_nothing_matches(
    catalog: Catalog, key: PrivateKey
) -> None:
    await catalog.register(valve("1.0.0").signed_with(key))
    await catalog.register(valve("1.1.0").signed_with(key))
    with pytest.raises(UnknownCapabilityError,
                       match=r"valve_control: no registered version matches \^2 "
                             r"\(registered: 1\.0\.0, 1\.1\.0\)"):
        await catalog.resolve("valve_control", "^2")


async def test_resolve_refuses_an_unknown_capability(catalog: Catalog) -> None:
    with pytest.raises(UnknownCapabilityError, match="capability pump_control: not in"):
        await catalog.resolve("pump_control", "*")


# -- what is stored in Redis is checked again ---------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target: Any = document
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


# One change per field of the definition (nested fields included); each keeps the
# document a valid definition, so only the signature can catch it.
TAMPERINGS = {
    "id": _set(("id",), "valve_controm"),
    "version": _set(("version",), "1.1.1"),
    "sector": _set(("sector",), "MEDICAL"),
    "description": _set(("description",), "Open or close a process valvf (Modbus TCP coil)"),
    "handler": _set(("handler",), "valve_control@1.1.1"),
    "preconditions.check": _set(("preconditions", 1, "check"), "state.reachable == false"),
    "preconditions.description": _set(("preconditions", 0, "description"), "Known valve commanf"),
    "preconditions.timeoutMs": _set(("preconditions", 0, "timeoutMs"), 1),
    "preconditions.pollIntervalMs": _set(("preconditions", 0, "pollIntervalMs"), 101),
    "preconditions.removed": lambda d: d["preconditions"].pop(),
    "postconditions.check": _set(("postconditions", 0, "check"), "True"),
    "postconditions.timeoutMs": _set(("postconditions", 0, "timeoutMs"), 5001),
    "postconditions.pollIntervalMs": _set(("postconditions", 0, "pollIntervalMs"), 200),
    "postconditions.description": _set(("postconditions", 0, "description"), "x"),
    "rollbackStrategy.action": _set(("rollbackStrategy", "action"), "valve_controm"),
    "rollbackStrategy.params": _set(("rollbackStrategy", "params", "action"), "previouz"),
    "rollbackStrategy.alertOnRollback": _set(("rollbackStrategy", "alertOnRollback"), False),
    "rollbackStrategy.versionRange": _set(("rollbackStrategy", "versionRange"), "^1"),
    "rollbackStrategy": _set(("rollbackStrategy",), "none"),
}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
async def test_a_stored_definition_changed_in_any_field_is_refused(
    catalog: Catalog, key: PrivateKey, redis: Redis, field: str
) -> None:
    await catalog.register(valve("1.1.0").signed_with(key))
    await catalog.resolve("valve_control", "1.1.0")  # verified and cached
    stored_key = catalog_definitions_key("valve_control")
    document = orjson.loads(await redis.hget(stored_key, "1.1.0"))
    TAMPERINGS[field](document)
    parse_definition(document, source="still valid")
    await redis.hset(stored_key, "1.1.0", orjson.dumps(document).decode())
    with pytest.raises(SignatureMismatchError, match="valve_control@1.1.0"):
        await catalog.resolve("valve_control", "1.1.0")


async def test_a_signed_definition_copied_under_another_version_is_refused(
    catalog: Catalog, key: PrivateKey, redis: Redis
) -> None:
    await catalog.register(valve("1.0.0").signed_with(key))
    stored_key = catalog_definitions_key("valve_control")
    await redis.hset(stored_key, "9.0.0", await redis.hget(stored_key, "1.0.0"))
    with pytest.raises(SignatureMismatchError, match="stored as valve_control@9.0.0"):
        await catalog.resolve("valve_control", "9.0.0")


async def test_resolve_skips_a_tampered_newest_version_for_a_valid_older_one(
    catalog: Catalog, key: PrivateKey, redis: Redis
) -> None:
    await catalog.register(valve("1.0.0").signed_with(key))
    await catalog.register(valve("1.1.0").signed_with(key))
    stored_key = catalog_definitions_key("valve_control")
    document = orjson.loads(await redis.hget(stored_key, "1.1.0"))
    document["handler"] = "evil@1.0.0"
    await redis.hset(stored_key, "1.1.0", orjson.dumps(document).decode())
    assert (await catalog.resolve("valve_control", "^1")).definition.version == "1.0.0"
    with pytest.raises(SignatureMismatchError):
        await catalog.resolve("valve_control", "^1.1")


async def test_a_stored_definition_that_is_no_longer_valid_json_is_refused(
    catalog: Catalog, key: PrivateKey, redis: Redis
) -> None:
    await catalog.register(valve("1.1.0").signed_with(key))
    await redis.hset(catalog_definitions_key("valve_control"), "1.1.0", "{broken")
    with pytest.raises(InvalidDefinitionError,
                       match=r"catalog:capability:valve_control\[1\.1\.0\]: not valid JSON"):
        await catalog.resolve("valve_control")


async def test_an_executor_that_does_not_trust_the_signer_refuses(
    redis: Redis, catalog: Catalog, key: PrivateKey
) -> None:
    await catalog.register(valve("1.1.0").signed_with(key))
    elsewhere = Catalog(redis, TrustStore([PrivateKey.generate().public()]),
                        clock=SystemClock(), logger=CATALOG_LOG)
    with pytest.raises(UntrustedKeyError, match="valve_control@1.1.0"):
        await elsewhere.resolve("valve_control", "^1")


async def test_a_key_that_expires_after_registration_is_refused_at_resolve(
    redis: Redis, key: PrivateKey
) -> None:
    clock = FakeClock(start_s=datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    expiry = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=1)
    catalog = Catalog(redis, TrustStore([key.public(expires_at=expiry)]), clock=clock,
                      logger=CATALOG_LOG)
    await catalog.register(valve("1.1.0").signed_with(key))
    await catalog.resolve("valve_control")  # verified and cached while the key is valid
    await clock.advance(3600)
    with pytest.raises(ExpiredKeyError, match="expired at 2026-12-01T01:00:00Z"):
        await catalog.resolve("valve_control")
    with pytest.raises(ExpiredKeyError):
        await catalog.register(valve("1.2.0").signed_with(key))


async def test_entries_report_each_version_with_its_problem(
    catalog: Catalog, key: PrivateKey, redis: Redis
) -> None:
    await catalog.register(valve("1.0.0").signed_with(key))
    await catalog.register(valve("1.1.0").signed_with(key))
    stored_key = catalog_definitions_key("valve_control")
    document = orjson.loads(await redis.hget(stored_key, "1.0.0"))
    document["description"] = "changed"
    await redis.hset(stored_key, "1.0.0", orjson.dumps(document).decode())
    entries = await catalog.entries()
    assert [(e.version, e.key_id, e.problem is None) for e in entries] == [
        ("1.0.0", None, False), ("1.1.0", key.key_id, True)]
    assert "does not match the definition" in str(entries[0].problem)


async def test_show_returns_the_newest_or_the_named_version(
    catalog: Catalog, key: PrivateKey
) -> None:
    await catalog.register(valve("1.0.0").signed_with(key))
    await catalog.register(valve("1.1.0").signed_with(key))
    assert (await catalog.show("valve_control")).version == "1.1.0"
    assert (await catalog.show("valve_control", "1.0.0")).version == "1.0.0"
    with pytest.raises(UnknownCapabilityError, match="valve_control@3.0.0"):
        await catalog.show("valve_control", "3.0.0")
    assert await catalog.ids() == ["valve_control"]


def test_catalog_errors_are_connector_fleet_errors() -> None:
    from framework.core.errors import ConnectorFleetError

    assert issubclass(CatalogError, ConnectorFleetError)


def test_fixture_directory_holds_the_seed_examples() -> None:
    names = {path.name for path in Path(CATALOG_FIXTURES).glob("*.json")}
    assert {"valve_control_v1.0.0.json", "valve_control_v1.1.0.json"} <= names


class CountingTrust(TrustStore):
    """The real trust store, counting the signature checks it makes."""

    checks = 0

    def verify(self, payload: bytes, signature: str | None, *, capability: str,
               now_s: float) -> SignatureCheck:
        self.checks += 1
        return super().verify(payload, signature, capability=capability, now_s=now_s)


async def test_a_verification_is_cached_until_the_stored_definition_changes(
    redis: Redis, key: PrivateKey
) -> None:
    trust = CountingTrust([key.public()])
    catalog = Catalog(redis, trust, clock=SystemClock(), logger=CATALOG_LOG)
    await catalog.register(valve("1.1.0").signed_with(key))
    checks_after_register = trust.checks
    for _ in range(3):
        await catalog.resolve("valve_control", "^1")
    assert trust.checks == checks_after_register + 1
    stored_key = catalog_definitions_key("valve_control")
    original = await redis.hget(stored_key, "1.1.0")
    document = orjson.loads(original)
    document["description"] = "changed in Redis"
    await redis.hset(stored_key, "1.1.0", orjson.dumps(document).decode())
    with pytest.raises(SignatureMismatchError):
        await catalog.resolve("valve_control", "^1")
    assert trust.checks == checks_after_register + 2
    await redis.hset(stored_key, "1.1.0", original)
    assert (await catalog.resolve("valve_control", "^1")).definition.version == "1.1.0"
    assert trust.checks == checks_after_register + 2


async def test_a_hand_written_field_that_is_not_a_version_does_not_hide_the_others(
    catalog: Catalog, key: PrivateKey, redis: Redis
) -> None:
    await catalog.register(valve("1.1.0").signed_with(key))
    await redis.hset(catalog_definitions_key("valve_control"), "latest", "{}")
    assert (await catalog.resolve("valve_control", "*")).definition.version == "1.1.0"
    problems = {e.version: e.problem for e in await catalog.entries()}
    assert problems["1.1.0"] is None
    assert "catalog:capability:valve_control[latest]: invalid version" in str(problems["latest"])
