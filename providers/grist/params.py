"""``grist_sync``'s parameters: the document, the table, the row's key (``require``)
and the values (``fields``) to upsert; ``fields: null`` removes the row (what the
rollback does when the row did not exist before the step).

The mapping from the event to the table is the rule's template: each column is a
``{{ ... }}`` over the event (``"Temperature": "{{ payload.value }}"``). Column ids
are checked to be Grist identifiers, so event data cannot name anything else.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
Cell = str | int | float | bool | None


class GristSyncParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    doc_id: str = Field(alias="docId", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    table: str = Field(pattern=r"^[A-Z][A-Za-z0-9_]{0,99}$")
    require: dict[str, Cell] = Field(min_length=1, max_length=20)
    # None: remove the row that ``require`` matches.
    fields: dict[str, Cell] | None = Field(max_length=200)
    # Store strings as given (True), or let Grist parse them by column type.
    no_parse: bool = Field(True, alias="noParse")
    on_many: Literal["first", "none", "all"] = Field("first", alias="onMany")
    # The Grist server; None: the configured GRIST_BASE_URL.
    base_url: str | None = Field(None, alias="baseUrl", pattern=r"^https?://")

    @field_validator("require", "fields")
    @classmethod
    def _column_ids(cls, value: dict[str, Cell] | None) -> dict[str, Cell] | None:
        for column in value or {}:
            if not _COLUMN.match(column) or column in ("id", "manualSort"):
                raise ValueError(f"{column!r} is not a column id (letters, digits, _; "
                                 "not id or manualSort)")
        return value
