"""The wiring every HTTP source type shares, as one connector factory.

A source type names its provider config model, its request headers, its
rate-limit rules (if its API has its own) and how it builds its parts from the
settings and a ready :class:`HttpClient`; :func:`http_connector_factory` does the
rest: validate ``providerConfig``, build the client over the right transport,
and wrap the parts in a :class:`UniversalPollingConnector` that closes the client.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from framework.polling.config import ConnectorConfig, parse_provider_config
from framework.polling.http import HttpClient
from framework.polling.poller import PollingConnector, SourceParts, UniversalPollingConnector
from framework.polling.rate_limits import RateLimitRules, RateLimitTransport
from framework.polling.registry import ConnectorContext, ConnectorFactory

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class SourceWiring:
    """What a source type's builder gets: its connector's config and services, and
    the HTTP client made for it."""

    config: ConnectorConfig
    context: ConnectorContext
    http: HttpClient


@dataclass(frozen=True)
class HttpSourceType(Generic[M]):
    """One HTTP source type. ``base_url`` names the host the rate-limit transport's
    network connection (and the environment's proxy for it) is made for."""

    settings: type[M]
    headers: Callable[[M], Mapping[str, str]]
    build: Callable[[M, SourceWiring], SourceParts[Any, Any, Any]]
    rate_limits: RateLimitRules | None = None
    base_url: Callable[[M], str] | None = None


def http_connector_factory(source: HttpSourceType[M]) -> ConnectorFactory:
    """The :data:`ConnectorFactory` of ``source``."""

    def create(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
        settings = parse_provider_config(source.settings, config)
        http = HttpClient(config, clock=context.clock, logger=context.logger,
                          headers=source.headers(settings),
                          transport=_transport(source, settings, config, context))
        parts = source.build(settings, SourceWiring(config, context, http))
        return UniversalPollingConnector(config=config, parts=parts, store=context.store,
                                         logger=context.logger, on_close=http.aclose)

    # The factory belongs to the source type's package, where the provider contract
    # harness looks for the type's contract case.
    create.__module__ = source.build.__module__
    return create


def _transport(
    source: HttpSourceType[M], settings: M, config: ConnectorConfig, context: ConnectorContext
) -> httpx.AsyncBaseTransport | None:
    if source.rate_limits is None:
        return context.http_transport
    base_url = source.base_url(settings) if source.base_url else None
    inner = context.http_transport or network_transport(base_url)
    return RateLimitTransport(inner, source.rate_limits, clock=context.clock,
                              max_body_bytes=config.max_body_bytes, connector=config.name)


def network_transport(base_url: str | None) -> httpx.AsyncBaseTransport:
    """httpx's transport, through the environment's proxy for ``base_url`` if any:
    httpx reads HTTPS_PROXY / NO_PROXY only when it builds the transport itself, and
    every request of a source goes to its one host."""
    if base_url is None:
        return httpx.AsyncHTTPTransport()
    url = httpx.URL(base_url)
    if urllib.request.proxy_bypass(url.host):
        return httpx.AsyncHTTPTransport()
    proxy = urllib.request.getproxies().get(url.scheme)
    return httpx.AsyncHTTPTransport(proxy=proxy) if proxy else httpx.AsyncHTTPTransport()
