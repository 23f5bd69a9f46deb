"""Secrets by origin: every value a ``${VAR}`` took from the environment.

A field's name says nothing reliable about its value (``api_token=`` in a URL's
query, a password in its userinfo, a ``Cookie`` or ``X-Api-Auth`` header), so
the substitution step records each value it takes from the environment in a
:class:`Secrets` set that travels with the configuration, and whatever is
printed (log lines, error messages, ``config check``, the ops API) has every
occurrence of those values replaced by ``***``: as written, URL-encoded
(``%40``, ``+``) and JSON-escaped (a log line is JSON).

Values shorter than :data:`MIN_SECRET_LENGTH` characters are not recorded:
replacing every ``1`` or ``on`` in the output would garble it and hide nothing
worth hiding. ``${VAR:-default}`` defaults are written in the file, so they are
not secret either.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

from framework.core.redaction import REDACTED

MIN_SECRET_LENGTH = 4


@dataclass(frozen=True)
class Secrets:
    """A set of secret values and how to hide them in text."""

    values: frozenset[str] = frozenset()

    @classmethod
    def of(cls, values: Any) -> Secrets:
        """The values long enough to be redacted safely (see MIN_SECRET_LENGTH)."""
        return cls(frozenset(v for v in values if len(v) >= MIN_SECRET_LENGTH))

    def __or__(self, other: Secrets) -> Secrets:
        return Secrets(self.values | other.values)

    def __bool__(self) -> bool:
        return bool(self.values)

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        forms = {form for value in self.values for form in _printed_forms(value)}
        if not forms:
            return None
        # Longest first: a secret that contains another is replaced whole.
        return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))

    def redact_text(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` (dicts, lists, strings) with every secret replaced."""
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
        if isinstance(value, str):
            return self.redact_text(value)
        return value


# What a URL's userinfo, path or query leaves unescaped (RFC 3986), so that a
# value is found however an HTTP client chose to encode it.
_URL_SAFE_SETS = ("", "/", "!$&'()*+,;=:@/?")


def _printed_forms(value: str) -> set[str]:
    forms = {value, *(quote(value, safe=safe) for safe in _URL_SAFE_SETS),
             *(quote_plus(value, safe=safe) for safe in _URL_SAFE_SETS)}
    return forms | {orjson.dumps(form).decode()[1:-1] for form in forms}


class KnownSecrets:
    """Every secret a process has loaded so far (a reload adds the new ones; an old
    value may still sit in a message, so none is forgotten). Shared by the log
    renderer and whatever loads the configuration."""

    def __init__(self) -> None:
        self._secrets = Secrets()
        self._lock = threading.Lock()  # configurations load in threads too

    @property
    def current(self) -> Secrets:
        return self._secrets

    def remember(self, secrets: Secrets) -> None:
        if secrets.values <= self._secrets.values:
            return
        with self._lock:
            self._secrets = self._secrets | secrets

    def redact_text(self, text: str) -> str:
        return self._secrets.redact_text(text)
