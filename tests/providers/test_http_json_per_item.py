"""HTTP_JSON does each item's work once: one id, one version (content hash), plain
field names looked up without JMESPath's visitor, with the same results."""

from __future__ import annotations

from typing import Any

import jmespath
import orjson
import pytest
from redis.asyncio import Redis

from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig
from framework.polling.lease import Lease
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from framework.testing import ReplayServer
from framework.testing.contract import ContractClock
from providers.http import HttpJsonItem, create_http_json_connector
from providers.http import source as http_source
from providers.http.contract_case import PATH, order, orders_page
from providers.http.source_config import PlainField, compile_expression
from tests.helpers import stream_items

VALUES: list[Any] = [
    {"id": 7},
    {"id": None},
    {"other": 1},
    {},
    [{"id": 1}],
    "id",
    3,
    None,
    {"id": {"x": 1}},
]


@pytest.mark.parametrize("expression", ["id", '"id"'])
def test_a_plain_field_finds_what_jmespath_finds(expression: str) -> None:
    path = compile_expression(expression)

    assert isinstance(path, PlainField) and path.expression == expression
    assert [path.search(v) for v in VALUES] == [jmespath.search(expression, v) for v in VALUES]


def test_other_expressions_stay_jmespath() -> None:
    assert not isinstance(compile_expression("data.orders"), PlainField)
    assert not isinstance(compile_expression("id || name"), PlainField)


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0
        self.expression = inner.expression

    def search(self, value: Any) -> Any:
        self.calls += 1
        return self.inner.search(value)


async def test_each_item_gets_one_id_and_one_content_hash_per_poll(
    redis: Redis, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[Any] = []
    original = http_source.content_version

    def counting_version(raw: Any) -> str:
        hashed.append(raw)
        return original(raw)

    monkeypatch.setattr(http_source, "content_version", counting_version)
    lease = Lease(redis, "orders", ttl_s=30)
    assert await lease.try_acquire()
    config = ConnectorConfig(
        name="orders",
        type="HTTP_JSON",
        provider_config={"url": replay.url + PATH, "itemsPath": "data.orders", "idField": "id"},
    )
    clock = ContractClock()
    connector = create_http_json_connector(
        config,
        ConnectorContext(
            store=StateStore(redis, config, lease, clock=clock),
            clock=clock,
            logger=get_logger(connector="orders"),
        ),
    )
    ids = Counting(connector.provider._id)  # type: ignore[attr-defined]
    connector.provider._id = ids  # type: ignore[attr-defined]
    replay.route(PATH, orders_page([order(n) for n in range(1, 6)]))

    summary = await connector.poll()
    await connector.aclose()

    assert summary.published == 5
    assert ids.calls == 5 and len(hashed) == 5
    entries = await stream_items(redis)
    signals = [HttpJsonItem.model_validate(orjson.loads(e["payload"])) for e in entries]
    assert [(s.id, s.version) for s in signals] == [(e["item_id"], e["version"]) for e in entries]
    assert [s.item for s in signals] == [order(n) for n in range(1, 6)]
