"""The provider contract: what every connector type must do, checked against
recorded replies on a real HTTP server and a real Redis.

A provider describes itself to the contract with one :class:`ProviderCase`:
its config (as a function of the replay server's base URL), the fields that
are required, its documented signal model, and :class:`Recording` objects,
each the replies for one poll plus the ids that poll must publish (and, if
needed, ``config_overrides`` merged into the config for that poll, e.g. the
pagination style of a generic provider):

- ``initial``: the first poll; publishes ``published_ids``.
- ``changed``: the poll after ``initial`` in which some items changed;
  ``published_ids`` are exactly those items (and nothing else is published).
- ``paged``: one poll that spans several replies (pages); every reply must be
  requested once and every id published once.
- ``not_modified``: replies that carry an ETag (or Last-Modified): the first
  poll publishes ``published_ids``; the next sends the validator back, gets
  304 and publishes nothing.

Any recording may be None for a source that has no such thing, but then
``unsupported`` must say why (``{"paged": "the endpoint returns the whole set at
once"}``): the reason is part of the case, and the checks that replay it do not
apply. A push source (a broker, a receiver, a schedule) has no HTTP replies at
all: its case gives its config and required fields, so ``config_errors`` runs,
and says why the rest is covered by its own tests.

Where the cases live
--------------------
In the provider's own package, in a module named ``contract_case`` that
defines ``CASES: list[ProviderCase]`` (one per connector type the package
registers): ``providers/<name>/contract_case.py`` for a built-in type, or
``<your_package>/contract_case.py`` next to the factory named by a
``connector_fleet.connectors`` entry point. :func:`find_case` looks for it in
the package of the type's factory and its parent packages, so a case travels
with its provider, and ``tests/test_provider_contract.py`` runs the contract
for every registered type (and fails for a type without a case). The builders
of recorded bodies in that module double as fixtures for the provider's own
tests. Another distribution runs the same checks in its suite with
:func:`applicable_checks` and :func:`run_check`, on a Redis client and the
:func:`recorded_api` server::

    replay = pytest.fixture(recorded_api)

    @pytest.mark.parametrize("check", applicable_checks(MY_CASE))
    async def test_contract(check, redis, replay):
        await run_check(check, MY_CASE, my_registry, redis, replay)

Checks (:data:`CHECKS`): ``config_errors`` (removing each required field, or
adding an unknown one, is a :class:`~framework.core.errors.ConfigError` naming the
connector and the field, without a secret value in it), ``initial_poll``
(signals valid against ``signal_model``), ``repeat_poll`` (nothing published,
by the same connector nor by a new one after a restart),
``changed_item`` (exactly the changed items), ``paging``, ``not_modified``
and ``auth_failure`` (401 on the first request: a clear error, one request,
nothing published, no state).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import orjson
from pydantic import BaseModel
from redis.asyncio import Redis

from framework.core.errors import ConfigError, PermanentSourceError
from framework.core.keys import state_key
from framework.core.logs import get_logger
from framework.core.redaction import is_secret_key
from framework.polling.config import ConnectorConfig, RetryConfig
from framework.polling.lease import Lease
from framework.polling.poller import PollingConnector, PollSummary
from framework.polling.registry import ConnectorContext, ConnectorRegistry
from framework.polling.state import StateStore
from framework.testing.replay_http import ReplayServer, Reply, Responder

Routes = Mapping[str, Sequence[Responder]]
"""Replies by URL path, in the order they are served (see :class:`ReplayServer`)."""

CASE_MODULE = "contract_case"
OPTIONAL_RECORDINGS = ("initial", "changed", "paged", "not_modified")
# The recording each check replays (config_errors needs none).
_RECORDING_OF_CHECK = {"initial_poll": "initial", "repeat_poll": "initial",
                       "auth_failure": "initial", "changed_item": "changed",
                       "paging": "paged", "not_modified": "not_modified"}
_START_S = 1_800_000_000.0  # 2027-01-15T08:00:00Z: a fixed "now" for time-window cursors


@dataclass(frozen=True)
class Recording:
    """The replies for one poll (``routes(base_url)``) and the ids it publishes;
    ``config_overrides`` are merged into the case's providerConfig for it (say, a
    pagination style)."""

    routes: Callable[[str], Routes]
    published_ids: Sequence[str]
    config_overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderCase:
    """How the contract exercises one connector type (see the module docstring)."""

    type_name: str
    signal_model: type[BaseModel]
    provider_config: Callable[[str], dict[str, Any]]
    required_fields: Sequence[str]
    initial: Recording | None = None
    changed: Recording | None = None
    paged: Recording | None = None
    not_modified: Recording | None = None
    unsupported: Mapping[str, str] = field(default_factory=dict)
    # Extra ConnectorConfig fields, snake_case (request_timeout_ms=2000).
    connector_fields: Mapping[str, Any] = field(default_factory=dict)

    def missing_reasons(self) -> list[str]:
        """Optional recordings that are absent without a reason (must be empty)."""
        return [
            name for name in OPTIONAL_RECORDINGS
            if getattr(self, name) is None and not self.unsupported.get(name)
        ]


class ContractClock:
    """A wall clock that stands still until a retry sleeps, then jumps; sleeps are
    recorded, never waited (the contract asserts behaviour, not timing)."""

    def __init__(self, start_s: float = _START_S) -> None:
        self.now_s = start_s
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now_s

    def monotonic(self) -> float:
        return self.now_s - _START_S

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += max(0.0, seconds)


def recorded_api() -> Iterator[ReplayServer]:
    """A started replay server, closed afterwards: the recorded-response HTTP server
    fixture (``replay = pytest.fixture(recorded_api)`` in a conftest.py)."""
    with ReplayServer() as server:
        yield server


def find_case(registry: ConnectorRegistry, type_name: str) -> ProviderCase:
    """The case of ``type_name``, from ``contract_case.CASES`` in the package of its
    factory or a parent package; :class:`LookupError` saying where to add it."""
    factory = registry.factory_for(ConnectorConfig(name="contract", type=type_name))
    package = getattr(factory, "__module__", "") or ""
    searched = []
    while package:
        searched.append(f"{package}.{CASE_MODULE}")
        module = _import_optional(f"{package}.{CASE_MODULE}")
        cases = cast(Sequence[ProviderCase], getattr(module, "CASES", ()))
        for case in cases:
            if case.type_name == type_name:
                return case
        package = package.rpartition(".")[0]
    raise LookupError(
        f"connector type {type_name} has no contract case: define CASES = "
        f"[ProviderCase(type_name={type_name!r}, ...)] in one of {', '.join(searched)} "
        "(see framework.testing.contract)"
    )


def _import_optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None  # that module does not exist; anything else is a real error
        raise


class ContractRun:
    """One check of one case: a connector built through the registry on real Redis,
    talking to the replay server."""

    def __init__(
        self, case: ProviderCase, registry: ConnectorRegistry, redis: Redis, server: ReplayServer
    ) -> None:
        self.case = case
        self.registry = registry
        self.redis = redis
        self.server = server
        self.clock = ContractClock()
        self.name = "contract-" + case.type_name.lower().replace("_", "-")
        self._lease: Lease | None = None
        self._connector: tuple[ConnectorConfig, PollingConnector] | None = None

    def config(self, provider_config: Mapping[str, Any] | None = None) -> ConnectorConfig:
        fields: dict[str, Any] = {
            "max_retries": 1,
            "retry_config": RetryConfig(base_delay_ms=10, max_delay_ms=1000, jitter_ratio=0.0),
            **self.case.connector_fields,
        }
        given = self.case.provider_config(self.server.url)
        return ConnectorConfig.model_validate(
            {**fields, "name": self.name, "type": self.case.type_name,
             "provider_config": given if provider_config is None else dict(provider_config)}
        )

    async def build(self, config: ConnectorConfig | None = None) -> PollingConnector:
        config = config or self.config()
        if self._lease is None:
            self._lease = Lease(self.redis, config.name, ttl_s=config.lease_ttl_seconds)
            if not await self._lease.try_acquire():
                raise AssertionError(f"lease of {config.name} is taken")
        context = ConnectorContext(
            store=StateStore(self.redis, config, self._lease, clock=self.clock),
            clock=self.clock,
            logger=get_logger(connector=config.name),
        )
        return self.registry.create(config, context)

    def play(self, recording: Recording) -> None:
        for path, replies in recording.routes(self.server.url).items():
            self.server.route(path, *replies)

    async def poll(self, recording: Recording, *, restart: bool = False) -> PollSummary:
        """One poll with ``recording``'s replies, by the connector of the previous poll
        when its config is the same (as a running worker does), or by a new one when
        ``restart`` (as after a process restart: only Redis remembers)."""
        self.play(recording)
        given = self.case.provider_config(self.server.url)
        config = self.config({**given, **recording.config_overrides})
        if restart or self._connector is None or self._connector[0] != config:
            await self.aclose()
            self._connector = (config, await self.build(config))
        return await self._connector[1].poll()

    async def aclose(self) -> None:
        if self._connector is not None:
            await self._connector[1].aclose()
            self._connector = None

    async def published(self) -> list[dict[str, str]]:
        # decode_responses=True (framework.core.connections): fields are str.
        entries = cast(list[tuple[str, dict[str, str]]],
                       await self.redis.xrange(self.config().output_stream))
        return [fields for _, fields in entries if fields.get("connector") == self.name]

    async def published_ids(self) -> list[str]:
        return [entry["item_id"] for entry in await self.published()]


Check = Callable[[ContractRun], Awaitable[None]]


async def check_config_errors(run: ContractRun) -> None:
    case = run.case
    valid = case.provider_config(run.server.url)
    secrets = [str(v) for k, v in valid.items() if is_secret_key(k) and v]
    variants = {f: {k: v for k, v in valid.items() if k != f} for f in case.required_fields}
    variants["contractUnknownField"] = {**valid, "contractUnknownField": "x"}
    connector = await run.build(run.config(valid))  # the valid config builds
    await connector.aclose()
    for field_name, provider_config in variants.items():
        try:
            connector = await run.build(run.config(provider_config))
        except ConfigError as exc:
            message = str(exc)
        else:
            await connector.aclose()
            raise AssertionError(f"{case.type_name}: accepted a config without/with {field_name}")
        assert run.name in message, f"error does not name the connector: {message}"
        assert field_name in message, f"error does not name {field_name}: {message}"
        leaked = [s for s in secrets if s in message]
        assert not leaked, f"error shows a secret value: {message}"


async def check_initial_poll(run: ContractRun) -> None:
    initial = _required(run.case.initial, "initial")
    summary = await run.poll(initial)
    entries = await run.published()
    assert [e["item_id"] for e in entries] == list(initial.published_ids), entries
    assert summary.published == len(entries) and summary.failed == 0, summary
    for entry in entries:
        assert entry["type"] == run.case.type_name
        payload = orjson.loads(entry["payload"])
        signal = run.case.signal_model.model_validate(payload)
        assert signal.model_dump(mode="json") == payload, "payload has fields the model drops"


async def check_repeat_poll(run: ContractRun) -> None:
    initial = _required(run.case.initial, "initial")
    await run.poll(initial)
    before = await run.published_ids()
    again = await run.poll(initial)
    after_restart = await run.poll(initial, restart=True)
    for summary in (again, after_restart):
        assert summary.published == 0 and summary.failed == 0, summary
    assert await run.published_ids() == before


async def check_changed_item(run: ContractRun) -> None:
    changed = _required(run.case.changed, "changed")
    await run.poll(_required(run.case.initial, "initial"))
    before = await run.published_ids()
    summary = await run.poll(changed)
    after = (await run.published_ids())[len(before):]
    assert after == list(changed.published_ids), after
    assert summary.published == len(after) and summary.failed == 0, summary


async def check_paging(run: ContractRun) -> None:
    recording = _required(run.case.paged, "paged")
    summary = await run.poll(recording)
    assert await run.published_ids() == list(recording.published_ids)
    assert summary.published == len(recording.published_ids), summary
    for path, replies in recording.routes(run.server.url).items():
        served = len(run.server.requests_to(path))
        assert served == len(replies), f"{path}: {served} requests for {len(replies)} replies"


async def check_not_modified(run: ContractRun) -> None:
    recording = _required(run.case.not_modified, "not_modified")
    await run.poll(recording)
    assert await run.published_ids() == list(recording.published_ids)
    count = len(run.server.requests)
    summary = await run.poll(recording)
    assert summary.not_modified and summary.published == 0, summary
    assert await run.published_ids() == list(recording.published_ids)
    conditional = [r for r in run.server.requests[count:]
                   if "if-none-match" in r.headers or "if-modified-since" in r.headers]
    assert conditional, "the second poll sent no If-None-Match / If-Modified-Since"


async def check_auth_failure(run: ContractRun) -> None:
    unauthorized = Reply(401, {"errors": ["Unauthorized"]})
    paths = _required(run.case.initial, "initial").routes(run.server.url)
    recording = Recording(lambda _: {path: [unauthorized] for path in paths}, ())
    try:
        await run.poll(recording)
    except PermanentSourceError as exc:
        assert "401" in str(exc) and run.name in str(exc), str(exc)
    else:
        raise AssertionError("a 401 did not fail the poll")
    assert len(run.server.requests) == 1, "a 401 was retried"
    assert await run.published_ids() == []
    assert not await run.redis.exists(state_key(run.name))


def _required(recording: Recording | None, name: str) -> Recording:
    if recording is None:
        raise AssertionError(f"the case has no {name} recording")
    return recording


CHECKS: dict[str, Check] = {
    "config_errors": check_config_errors,
    "initial_poll": check_initial_poll,
    "repeat_poll": check_repeat_poll,
    "changed_item": check_changed_item,
    "paging": check_paging,
    "not_modified": check_not_modified,
    "auth_failure": check_auth_failure,
}


def applicable_checks(case: ProviderCase) -> list[str]:
    """The checks that apply to ``case``: all but the optional ones it lacks."""
    absent = {name for name in OPTIONAL_RECORDINGS if getattr(case, name) is None}
    return [name for name in CHECKS if _RECORDING_OF_CHECK.get(name) not in absent]


async def run_check(
    check: str, case: ProviderCase, registry: ConnectorRegistry, redis: Redis,
    server: ReplayServer,
) -> None:
    """Run one contract check (a name of :data:`CHECKS`); raises AssertionError."""
    run = ContractRun(case, registry, redis, server)
    try:
        await CHECKS[check](run)
    finally:
        await run.aclose()
