"""DATADOG's case for the provider contract (framework.testing.contract), and the
builders of ``GET /api/v2/events`` bodies that tests/test_datadog.py uses too."""

from __future__ import annotations

from typing import Any

from framework.testing import ProviderCase, Recording, Reply, Routes
from providers.datadog.connector import EVENTS_PATH
from providers.datadog.schema import DatadogEvent

BASE_MS = 1_799_996_400_000  # 2027-01-15T07:00:00Z, an hour before the contract's "now"


def event_key(number: int) -> str:
    return f"AAAAAZNh8r2Q0WmF{number:08d}"


def event(number: int, revision: int = 0, *, at_ms: int | None = None) -> dict[str, Any]:
    """One item of the events list: a monitor alert on host web-<number>."""
    at_ms = BASE_MS + number * 1000 if at_ms is None else at_ms
    status = "error" if revision % 2 == 0 else "success"
    return {
        "id": event_key(number),
        "type": "event",
        "attributes": {
            "timestamp": _iso_ms(at_ms),
            "message": f"%%%\nCPU usage is above 90% on web-{number} (notification {revision})",
            "tags": ["env:prod", "service:checkout", f"host:web-{number}", "monitor"],
            "attributes": {
                "evt": {"id": str(7_700_000_000_000_000_000 + number), "source_id": 36,
                        "type": "monitor_alert"},
                "title": f"[{'Triggered' if status == 'error' else 'Recovered'}] CPU high on "
                         f"web-{number}",
                "status": status,
                "priority": "normal",
                "service": "checkout",
                "hostname": f"web-{number}",
                "source_type_name": "Monitor Alert",
                "monitor_id": 123_456,
                "monitor_groups": [f"host:web-{number}"],
                "aggregation_key": f"monitor-123456-host:web-{number}",
                "timestamp": at_ms,
            },
        },
    }


def events_page(
    events: list[dict[str, Any]], after: str | None = None, base_url: str = "", **kwargs: Any
) -> Reply:
    """A page of ``GET /api/v2/events``, with ``meta.page.after`` and ``links.next``
    when another page follows."""
    body: dict[str, Any] = {
        "data": events,
        "meta": {"elapsed": 57, "request_id": "pddv1ChZPT3pVRWNlbWRQR", "status": "done",
                 "page": {"after": after} if after else {}},
    }
    if after:
        body["links"] = {"next": f"{base_url}{EVENTS_PATH}?page%5Bcursor%5D={after}"}
    return Reply(body=body, **kwargs)


def _iso_ms(epoch_ms: int) -> str:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _routes(*replies: Reply) -> Routes:
    return {EVENTS_PATH: replies}


def _paged(base_url: str) -> Routes:
    return _routes(
        events_page([event(1), event(2)], after="eyJhZnRlciI6IkFRQUFBWE4", base_url=base_url),
        events_page([event(3), event(4)], after="eyJhZnRlciI6IkFRQUFBWE5", base_url=base_url),
        events_page([event(5)]),
    )


CASES = [
    ProviderCase(
        type_name="DATADOG",
        signal_model=DatadogEvent,
        provider_config=lambda base_url: {
            "apiKey": "dd-contract-api-key", "appKey": "dd-contract-app-key",
            "baseUrl": base_url, "query": "source:alert"},
        required_fields=["apiKey", "appKey"],
        initial=Recording(lambda _: _routes(events_page([event(1), event(2), event(3)])),
                          [event_key(n) for n in (1, 2, 3)]),
        changed=Recording(
            lambda _: _routes(events_page([event(1), event(2, revision=1), event(3)])),
            [event_key(2)],
        ),
        paged=Recording(_paged, [event_key(n) for n in range(1, 6)]),
        unsupported={"not_modified": "the v2 events API sends no ETag or Last-Modified; the "
                                     "time window keeps a repeated poll small instead"},
    )
]
