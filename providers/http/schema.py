"""The signal of the generic JSON provider: the item as the API sent it, with its
id, version and the fields the config projects out of it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class HttpJsonItem(BaseModel):
    """One item of a configured JSON API.

    ``id`` and ``version`` are what ``idField`` / ``versionField`` gave (the
    version is a content hash when there is no ``versionField``); ``fields``
    holds one value per entry of the config's ``fields`` (null when the
    expression finds nothing); ``item`` is the raw item, untouched.
    """

    model_config = ConfigDict(frozen=True)

    source: str = "http_json"
    connector: str
    id: str
    version: str
    fields: dict[str, Any] = {}
    item: Any
