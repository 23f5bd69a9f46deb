"""Builders shared by the tests: a connector over an in-memory source on real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig
from framework.polling.lease import Lease
from framework.polling.poller import FetchResult, SourceParts, UniversalPollingConnector
from framework.polling.state import ConnectorState, StateStore

Item = dict[str, Any]


@dataclass
class ListSource:
    """A source whose current items the test sets; records what each fetch saw."""

    items: list[Item] = field(default_factory=list)
    complete: bool = True
    seen_states: list[ConnectorState] = field(default_factory=list)


async def fetch_list(source: ListSource, state: ConnectorState) -> FetchResult[Item]:
    source.seen_states.append(state)
    return FetchResult(items=list(source.items), complete=source.complete)


def transform(raw: Item) -> Item:
    if raw.get("poison"):
        raise ValueError(f"cannot transform {raw['id']}")
    return {"id": raw["id"], "value": raw.get("value")}


def item_id(raw: Item) -> str:
    return str(raw.get("id") or "")


async def make_connector(
    redis: Redis,
    source: ListSource,
    *,
    name: str = "test-source",
    lease: Lease | None = None,
    chunk_items: int = 5_000,
    id_of: Callable[[Item], str] = item_id,
    **config_fields: Any,
) -> tuple[UniversalPollingConnector[ListSource, Item, Item], Lease]:
    config = ConnectorConfig(name=name, type="TEST", **config_fields)
    if lease is None:
        lease = Lease(redis, name, ttl_s=30)
        assert await lease.try_acquire()
    store = StateStore(redis, config, lease, clock=SystemClock(), chunk_items=chunk_items)
    connector = UniversalPollingConnector[ListSource, Item, Item](
        config=config,
        parts=SourceParts(provider=source, fetcher=fetch_list, item_id=id_of,
                          transformer=transform),
        store=store,
        logger=get_logger(connector=name),
    )
    return connector, lease


async def stream_items(redis: Redis, stream: str = "raw-input-signals") -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(stream)]


class ManualClock:
    """Wall time the test sets; retry sleeps are recorded, not waited."""

    def __init__(self, now_s: float = 1_800_000_000.0) -> None:
        self.now_s = now_s
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now_s

    def monotonic(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` (the state of another process: nothing to await)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s")
