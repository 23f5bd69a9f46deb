"""``${VAR}`` substitution, the one syntax of connectors.json and rules.json.

``${VAR}`` is replaced by the variable's value, ``${VAR:-default}`` by the
default when the variable is unset, and ``$${`` stands for a literal ``${``. A
variable with neither a value nor a default is handed to the caller's
``missing(variable, path)``, which raises (connectors) or records a problem and
keeps the reference (rules, which report every problem at once).

Every value taken from ``env`` is added to ``taken`` when the caller passes a
set: those are the secrets to redact wherever the result is printed
(:mod:`framework.core.secrets`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# (variable, path of the string in the document) -> the replacement, or raise.
Missing = Callable[[str, str], str]


def substitute(value: Any, env: Mapping[str, str], missing: Missing, path: str = "",
               taken: set[str] | None = None) -> Any:
    """A copy of ``value`` with every string substituted; ``path`` names where
    each string sits (``providerConfig.auth.token``, ``rules[0].steps[1]``)."""
    if isinstance(value, dict):
        return {
            k: substitute(v, env, missing, f"{path}.{k}" if path else str(k), taken)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute(v, env, missing, f"{path}[{i}]", taken) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, variable, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if variable in env:
            if taken is not None:
                taken.add(env[variable])
            return env[variable]
        if default is not None:
            return default
        return missing(variable, path)

    return _VARIABLE.sub(replace, value)
