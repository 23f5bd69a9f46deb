"""What a big poll holds and frees without holding the event loop (issue 13 item 6):
items are released a batch at a time as they are diffed, not all at once at the
poll's end; a body is
kept in the chunks it came in and its JSON is read without joining them."""

from __future__ import annotations

import weakref
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.errors import MalformedResponseError
from framework.core.logs import get_logger
from framework.polling import (
    ConnectorConfig,
    ConnectorState,
    FetchResult,
    HttpClient,
    Lease,
    SourceParts,
    StateStore,
    UniversalPollingConnector,
    read_json,
)
from framework.polling.diff import BATCH_ITEMS
from framework.polling.exchange import ReadResponse, body_chunks
from framework.testing import ReplayServer, Reply

ITEMS = 300


class Item(dict[str, Any]):
    """A dict that a weak reference can follow (a plain dict cannot)."""


class Source:
    def __init__(self) -> None:
        self.refs: list[weakref.ref[Item]] = []
        self.alive_before: list[int] = []

    async def fetch(self, _: ConnectorState) -> FetchResult[Item]:
        items = [Item(id=f"i{n}", value=n) for n in range(ITEMS)]
        self.refs = [weakref.ref(item) for item in items]
        return FetchResult(items=items)

    def transform(self, raw: Item) -> dict[str, Any]:
        """Counts the items before this one that are still alive."""
        position = int(raw["value"])
        self.alive_before.append(sum(ref() is not None for ref in self.refs[:position]))
        return dict(raw)


async def fetch(source: Source, state: ConnectorState) -> FetchResult[Item]:
    return await source.fetch(state)


async def connector_over(redis: Redis, source: Source) -> UniversalPollingConnector[
        Source, Item, dict[str, Any]]:
    config = ConnectorConfig(name="released", type="TEST")
    lease = Lease(redis, config.name, ttl_s=30)
    assert await lease.try_acquire()
    return UniversalPollingConnector[Source, Item, dict[str, Any]](
        config=config,
        parts=SourceParts(provider=source, fetcher=fetch, item_id=lambda raw: str(raw["id"]),
                          transformer=source.transform),
        store=StateStore(redis, config, lease, clock=SystemClock(), chunk_items=50),
        logger=get_logger(connector=config.name),
    )


async def test_the_items_of_a_list_are_released_batch_by_batch_as_diffed(redis: Redis) -> None:
    source = Source()
    connector = await connector_over(redis, source)

    summary = await connector.poll()

    assert summary.published == ITEMS
    assert await redis.xlen("raw-input-signals") == ITEMS
    # When item k was transformed, the items of the batches before its own were
    # freed: at most a batch's worth of items before it was still alive.
    assert len(source.alive_before) == ITEMS
    assert max(source.alive_before) < BATCH_ITEMS
    assert source.alive_before[-1] <= (ITEMS - 1) % BATCH_ITEMS
    assert all(ref() is None for ref in source.refs)


@pytest.fixture
async def http() -> Any:
    client = HttpClient(ConnectorConfig(name="body", type="TEST"), clock=SystemClock(),
                        logger=get_logger(connector="body"))
    yield client
    await client.aclose()


async def test_a_big_body_is_kept_in_its_chunks_and_read_as_json_without_joining(
    replay: ReplayServer, http: HttpClient
) -> None:
    document = {"features": [{"id": n, "text": "é" * 50} for n in range(20_000)]}
    body = orjson.dumps(document)
    replay.route("/big", Reply(body=body))

    response = await http.get(replay.url + "/big")

    assert isinstance(response, ReadResponse)
    assert len(body_chunks(response)) > 1
    assert b"".join(body_chunks(response)) == body
    assert await read_json(response, connector="body") == document
    assert response._joined is None  # read without one joined copy of the body
    # Every httpx accessor still serves the whole body, joined when first asked.
    assert response.content == body
    assert response.json() == document
    assert b"".join(response.iter_bytes()) == body
    assert await response.aread() == body
    assert response.headers["content-length"] == str(len(body))


async def test_a_big_malformed_body_is_quoted_from_its_start_without_joining(
    replay: ReplayServer, http: HttpClient
) -> None:
    body = b'{"features": [' + b'{"id": 1},' * 50_000 + b"oops]}"
    replay.route("/bad", Reply(body=body))
    response = await http.get(replay.url + "/bad")

    with pytest.raises(MalformedResponseError) as raised:
        await read_json(response, connector="body")

    message = str(raised.value)
    assert f"at char {body.index(b'oops')}" in message
    assert '{"features": [{"id": 1},' in message and message.endswith("...")
    assert response._joined is None
