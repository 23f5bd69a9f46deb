"""The ``HTTP_JSON`` source config: the request, where the items are, and how to page
(each pagination style names the framework's paginator it pages by).

Expressions are JMESPath (the ``jmespath`` library: the reference Python
implementation of a specified language, with a compliance test suite, used by
the AWS CLI and boto3 — one grammar, no dialects, unlike JSONPath). Every
expression is compiled when the config is read: an invalid one is a config
error naming the field and the expression, never a failure at the first poll.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.parser import ParsedResult
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, model_validator
from pydantic.alias_generators import to_camel

from framework.polling import (
    CursorParam,
    LinkHeader,
    NextLink,
    Offset,
    PageNumber,
    Paginator,
    SinglePage,
)


class PlainField:
    """A JMESPath expression that is one field name (``id``, ``"last-update"``):
    looked up directly, as JMESPath would (null unless the value is an object
    holding that key), without JMESPath's per-call visitor (several times slower
    than the lookup, run for every item of every poll)."""

    def __init__(self, expression: str, key: str) -> None:
        self.expression = expression
        self._key = key

    def search(self, value: Any) -> Any:
        return value.get(self._key) if isinstance(value, dict) else None


def compile_expression(expression: str) -> ParsedResult | PlainField:
    """A compiled JMESPath expression, or ValueError saying what is wrong where."""
    try:
        parsed = jmespath.compile(expression)
        if parsed.parsed["type"] == "field":
            return PlainField(expression, parsed.parsed["value"])
        return parsed
    except jmespath_errors.ParseError as exc:
        ends_early = isinstance(exc, jmespath_errors.IncompleteExpressionError)
        detail = "the expression ends too early" if ends_early else exc.msg
        raise ValueError(
            f"invalid JMESPath expression {expression!r}: {detail} at position "
            f"{exc.lex_position}"
        ) from None
    except jmespath_errors.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {exc}") from None


def _valid_expression(expression: str) -> str:
    compile_expression(expression)
    return expression


Expression = Annotated[str, AfterValidator(_valid_expression)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class NoPagination(_Model):
    """One request answers with every item."""

    style: Literal["none"] = "none"

    def paginator(self) -> Paginator:
        return SinglePage()


class NextLinkPagination(_Model):
    """The body holds the next page's URL (absolute or relative); null ends."""

    style: Literal["nextLink"]
    next_url_path: Expression

    def paginator(self) -> Paginator:
        return NextLink(compile_expression(self.next_url_path))


class LinkHeaderPagination(_Model):
    """RFC 8288 ``Link: <...>; rel="next"`` (GitHub, GitLab...); no next link ends."""

    style: Literal["linkHeader"]

    def paginator(self) -> Paginator:
        return LinkHeader()


class PagePagination(_Model):
    """``?page=1,2,3...``; a page shorter than ``size`` (or empty) is the last."""

    style: Literal["page"]
    param: str = Field("page", min_length=1)
    start: int = Field(1, ge=0)
    size_param: str | None = None
    size: int | None = Field(None, gt=0)

    def paginator(self) -> Paginator:
        return PageNumber(param=self.param, start_at=self.start, size_param=self.size_param,
                          size=self.size)


class OffsetPagination(_Model):
    """``?offset=0,N,2N...`` (offset moves by the items received); short or empty ends."""

    style: Literal["offset"]
    param: str = Field("offset", min_length=1)
    size_param: str | None = None
    size: int | None = Field(None, gt=0)

    def paginator(self) -> Paginator:
        return Offset(param=self.param, size_param=self.size_param, size=self.size)


class CursorPagination(_Model):
    """The body holds an opaque cursor sent back as ``param``; null or empty ends."""

    style: Literal["cursor"]
    cursor_path: Expression
    param: str = Field("cursor", min_length=1)

    def paginator(self) -> Paginator:
        return CursorParam(compile_expression(self.cursor_path), param=self.param)


Pagination = Annotated[
    NoPagination | NextLinkPagination | LinkHeaderPagination | PagePagination
    | OffsetPagination | CursorPagination,
    Field(discriminator="style"),
]


class HttpJsonConfig(_Model):
    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    # ${VAR} references are substituted when connectors.json is read.
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    body: Any = None
    items_path: Expression = "@"
    id_field: Expression
    # Absent: the version is a hash of the item's content.
    version_field: Expression | None = None
    # Signal fields projected from each item: {"title": "fields.summary"}.
    fields: dict[str, Expression] = Field(default_factory=dict)
    pagination: Pagination = Field(default_factory=NoPagination)
    max_pages: int = Field(100, ge=1)
    # The response is the source's whole current set: ids it no longer holds are forgotten.
    complete: bool = True
    # If-None-Match / If-Modified-Since, for a source answered in one response.
    conditional: bool = True

    def request_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", **self.headers}

    @model_validator(mode="after")
    def _body_needs_post(self) -> HttpJsonConfig:
        if self.body is not None and self.method != "POST":
            raise ValueError("body is only sent with method POST")
        if isinstance(self.pagination, PagePagination | OffsetPagination) and (
            self.pagination.size_param and self.pagination.size is None
        ):
            raise ValueError("pagination.sizeParam needs pagination.size")
        return self
