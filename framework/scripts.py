"""The Lua scripts shipped in ``framework/lua`` (each documents its KEYS and ARGV)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua(name: str) -> str:
    return resources.files("framework").joinpath("lua", f"{name}.lua").read_text("utf-8")
