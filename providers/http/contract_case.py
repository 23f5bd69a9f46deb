"""HTTP_JSON's case for the provider contract (framework.testing.contract), and the
builders of a typical REST list response that tests/test_http_json.py uses too:
``{"data": {"orders": [...]}, "links": {"next": ...}}``."""

from __future__ import annotations

from typing import Any

from framework.testing import ProviderCase, Recording, Reply, Routes
from providers.http.schema import HttpJsonItem

PATH = "/v1/orders"
NEXT_LINK = {"pagination": {"style": "nextLink", "nextUrlPath": "links.next"}}


def order(number: int, revision: int = 0) -> dict[str, Any]:
    return {
        "id": 1000 + number,
        "status": "open" if revision == 0 else "shipped",
        "total": {"amount": f"{number * 3}.50", "currency": "EUR"},
        "customer": {"id": f"c-{number % 7}"},
        "updated_at": f"2026-11-20T10:{revision:02d}:00Z",
    }


def orders_page(orders: list[dict[str, Any]], next_url: str | None = None,
                **kwargs: Any) -> Reply:
    body = {"data": {"orders": orders}, "links": {"next": next_url},
            "meta": {"count": len(orders)}}
    return Reply(body=body, **kwargs)


def provider_config(base_url: str) -> dict[str, Any]:
    return {
        "url": base_url + PATH,
        "headers": {"Authorization": "Bearer contract-secret-token"},
        "params": {"status": "any"},
        "itemsPath": "data.orders",
        "idField": "id",
        "versionField": "updated_at",
        "fields": {"status": "status", "amount": "total.amount"},
    }


def _routes(*replies: Reply) -> Routes:
    return {PATH: replies}


def _paged(_: str) -> Routes:
    return _routes(
        orders_page([order(1), order(2)], next_url=f"{PATH}?status=any&page=2"),
        orders_page([order(3), order(4)], next_url=f"{PATH}?status=any&page=3"),
        orders_page([order(5)]),
    )


def _ids(*numbers: int) -> list[str]:
    return [str(1000 + n) for n in numbers]


CASES = [
    ProviderCase(
        type_name="HTTP_JSON",
        signal_model=HttpJsonItem,
        provider_config=provider_config,
        required_fields=["url", "idField"],
        initial=Recording(lambda _: _routes(orders_page([order(1), order(2), order(3)])),
                          _ids(1, 2, 3)),
        changed=Recording(
            lambda _: _routes(orders_page([order(1), order(2, revision=1), order(3)])),
            _ids(2),
        ),
        paged=Recording(_paged, _ids(1, 2, 3, 4, 5), config_overrides=NEXT_LINK),
        not_modified=Recording(
            lambda _: _routes(orders_page([order(1)], etag='W/"orders-1"')), _ids(1)),
    )
]
