"""A client of the control API for tests: real HTTP to a real ops server, every
answer checked against the OpenAPI document for its route, method and status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from framework.core import KnownSecrets, SystemClock
from framework.polling import FleetConfig
from worker.ops import ApiOptions, OpsContext, OpsServer, Role, TokenStore, build_app

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("worker.ops").joinpath("openapi.json").read_text("utf-8"))
_REGISTRY = Registry().with_resource(
    "urn:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))


def check_against_document(method: str, template: str, response: httpx.Response) -> None:
    """The answer is JSON and fits the document's schema for this route and status."""
    operation = DOCUMENT["paths"][template][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method} {template} answered {status}, not in the document: {response.text}")
    assert response.headers["content-type"].startswith("application/json"), response.text
    pointer = ("/paths/" + template.replace("~", "~0").replace("/", "~1")
               + f"/{method.lower()}/responses/{status}/content/application~1json/schema")
    validator = Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=_REGISTRY)
    body = response.json()
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{method} {template} {status}: {errors[0].message} in {body}"


class Api:
    """``await api.call("POST", "/api/v1/connectors/{name}/pause", token, name="x")``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, template: str, token: str | None = None, *,
                   json_body: Any = None, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, **path: str) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, template.format(**path), json=json_body,
                                             params=params, headers=sent)
        check_against_document(method, template, response)
        return response


@asynccontextmanager
async def serving(redis: Redis, fleet: Callable[[], FleetConfig], *,
                  options: ApiOptions | None = None, secrets: KnownSecrets | None = None,
                  ) -> AsyncIterator[tuple[Api, str]]:
    """A real ops server on 127.0.0.1 (a free port) over ``redis``; its API and base URL."""
    ops = OpsContext(redis=redis, prometheus=CollectorRegistry(), fleet=fleet,
                     clock=SystemClock(), process_health=lambda: (True, {}),
                     secrets=secrets, api=options or ApiOptions())
    server = OpsServer(build_app(ops), host="127.0.0.1", port=0)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield Api(client), base
    finally:
        await server.stop()


async def tokens_for_every_role(redis: Redis) -> dict[Role, str]:
    store = TokenStore(redis, clock=SystemClock())
    return {role: (await store.create(name=f"{role.label}-tester", role=role,
                                      created_by="test"))[0] for role in Role}


def empty_fleet() -> FleetConfig:
    return FleetConfig(connectors={}, source=str(Path("connectors.json")))
