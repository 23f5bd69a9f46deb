"""The Lua scripts each side ships in its ``lua/`` folder (each script's header
names its KEYS, ARGV and return value)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua`` (``lua("framework.polling", "commit")``)."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")
