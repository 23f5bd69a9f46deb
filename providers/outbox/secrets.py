"""Credentials of the messaging actions, by environment variable name.

A rule names the variable (``tokenEnv``), never the secret: a rule step's
parameters are written into the audit chain and the step records, so a secret
there would be stored and shown. Every value read is kept so that the action can
take it out of any error text (:meth:`EnvSecrets.redact`) before the error leaves
the handler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from framework.core import Secrets


class EnvSecrets:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """``env``: where the values are read (the process environment by default)."""
        self._env = os.environ if env is None else env
        self._seen = Secrets()

    def read(self, variable: str, *, capability: str, what: str,
             param: str | None = None) -> str:
        """The value of ``variable``; ValueError naming the variable (and the parameter
        that chose it, if one did) when it is unset or empty (a configuration error,
        not retried)."""
        value = self._env.get(variable, "")
        if not value:
            chosen = f" (params.{param})" if param else ""
            raise ValueError(f"{capability}: no {what}: the environment variable "
                             f"{variable}{chosen} is unset or empty")
        self._seen = self._seen | Secrets.of([value])
        return value

    def redact(self, text: str) -> str:
        """``text`` with every secret read so far replaced by ``***``."""
        return self._seen.redact_text(text)

    def read_optional(self, variable: str) -> str | None:
        """The value of ``variable``, or None when it is unset or empty."""
        value = self._env.get(variable, "")
        if not value:
            return None
        self._seen = self._seen | Secrets.of([value])
        return value
