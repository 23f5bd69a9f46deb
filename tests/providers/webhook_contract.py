"""A pydantic contract an http-webhook endpoint checks bodies with (config ``contract``)."""

from __future__ import annotations

from pydantic import BaseModel


class Reading(BaseModel):
    sensor: str
    reading: float
