"""The provider contract (framework.testing.contract) over every registered type:
a type without a case fails here, and each case runs every check that applies."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from framework.polling.config import ConnectorConfig
from framework.polling.http import HttpClient
from framework.polling.poller import (
    FetchResult,
    PollingConnector,
    SourceParts,
    UniversalPollingConnector,
)
from framework.polling.registry import ConnectorContext, ConnectorRegistry
from framework.polling.state import ConnectorState
from framework.testing import ReplayServer, Reply
from framework.testing.contract import (
    CHECKS,
    ProviderCase,
    Recording,
    applicable_checks,
    find_case,
    push_source_reason,
    run_check,
)
from providers.builtin import default_registry

REGISTRY = default_registry()


def _cases() -> dict[str, ProviderCase]:
    found = {}
    for type_name in REGISTRY.types:
        try:
            found[type_name] = find_case(REGISTRY, type_name)
        except LookupError:
            continue  # reported by test_every_registered_type_has_a_complete_case
    return found


CASES = _cases()
PARAMS = [(t, check) for t, case in CASES.items() for check in applicable_checks(case)]


@pytest.mark.parametrize("type_name", REGISTRY.types)
def test_every_registered_type_has_a_complete_case(type_name: str) -> None:
    reason = push_source_reason(REGISTRY, type_name)
    if reason is not None:
        pytest.skip(f"{type_name} is a push source (the contract polls): {reason}")
    case = find_case(REGISTRY, type_name)

    assert case.type_name == type_name
    assert case.missing_reasons() == [], "say in `unsupported` why these recordings are absent"
    assert case.required_fields, "a case names at least one required field"


@pytest.mark.parametrize(("type_name", "check"), PARAMS)
async def test_provider_contract(
    type_name: str, check: str, redis: Redis, replay: ReplayServer
) -> None:
    await run_check(check, CASES[type_name], REGISTRY, redis, replay)


def test_find_case_says_where_to_put_a_missing_case() -> None:
    registry = ConnectorRegistry()
    registry.register_connector("NO_CASE", sloppy_factory)

    with pytest.raises(LookupError, match=r"NO_CASE has no contract case: define CASES = .* "
                       r"tests\.providers\.test_provider_contract\.contract_case"):
        find_case(registry, "NO_CASE")


def test_every_check_is_known() -> None:
    assert set(applicable_checks(CASES["NOAA_WEATHER"])) == set(CHECKS) - {"paging"}


# -- the contract catches a provider that breaks it ---------------------------------------

class Thing(BaseModel):
    id: int
    name: str


def sloppy_factory(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    """Breaks the contract on purpose: a new version at every poll, unknown config
    fields ignored."""
    base_url = config.provider_config.get("baseUrl")
    if not base_url:
        raise ValueError("baseUrl is required")
    http = HttpClient(config, clock=context.clock, logger=context.logger)
    polls = itertools.count()

    async def fetch(client: HttpClient, state: ConnectorState) -> FetchResult[dict[str, Any]]:
        next(polls)
        return FetchResult(items=(await client.get(f"{base_url}/things")).json())

    return UniversalPollingConnector[HttpClient, dict[str, Any], Thing](
        config=config,
        parts=SourceParts(provider=http, fetcher=fetch, item_id=lambda raw: str(raw["id"]),
                          transformer=Thing.model_validate,
                          change_detector=lambda raw: f"{raw['id']}@{polls}"),
        store=context.store, logger=context.logger, on_close=http.aclose)


THINGS = Recording(lambda _: {"/things": [Reply(body=[{"id": 1, "name": "a"}])]}, ["1"])
SLOPPY = ProviderCase(
    type_name="SLOPPY", signal_model=Thing, provider_config=lambda url: {"baseUrl": url},
    required_fields=["baseUrl"], initial=THINGS, changed=THINGS,
    unsupported={"paged": "-", "not_modified": "-"})


@pytest.fixture
def sloppy_registry() -> ConnectorRegistry:
    registry = ConnectorRegistry()
    registry.register_connector("SLOPPY", sloppy_factory)
    return registry


async def test_the_harness_runs_a_provider_that_keeps_the_basics(
    sloppy_registry: ConnectorRegistry, redis: Redis, replay: ReplayServer
) -> None:
    await run_check("initial_poll", SLOPPY, sloppy_registry, redis, replay)


@pytest.mark.parametrize(("check", "failure"), [
    ("repeat_poll", "published=1"),
    ("config_errors", "accepted a config without/with contractUnknownField"),
])
async def test_a_provider_that_breaks_the_contract_fails_it(
    sloppy_registry: ConnectorRegistry, redis: Redis, replay: ReplayServer, check: str,
    failure: str,
) -> None:
    with pytest.raises(AssertionError, match=failure):
        await run_check(check, SLOPPY, sloppy_registry, redis, replay)
