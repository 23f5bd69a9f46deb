"""Semantic versions and version ranges, as rules and the catalog write them.

A version is ``MAJOR.MINOR.PATCH`` (a pre-release such as ``1.2.0rc1`` or
``1.2.0-rc.1`` is accepted and sorts before its release). Comparison and the
comparator operators come from :mod:`packaging` (PEP 440 ordering, which agrees
with semver's for these forms).

A range is a comma-separated list of clauses, all of which must hold:

==================  =====================================================
clause              matches
==================  =====================================================
``*`` (or empty)    every version
``1.2.3``           exactly 1.2.3 (``1.2`` = any 1.2.x, ``1`` = any 1.x.y)
``^1.1``            >=1.1.0, <2.0.0 (``^0.2.3``: <0.3.0; ``^0.0.3``: <0.0.4)
``~1.2``            >=1.2.0, <1.3.0 (``~1``: <2.0.0)
``>=1.0`` ``<2``    the comparators ``== != < <= > >=``
==================  =====================================================

so ``>=1.0,<2`` and ``^1.0`` are the same range. Pre-releases only match a
range that names a pre-release, as with npm and pip.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from framework.core.errors import VersionError

__all__ = ["Version", "VersionRange", "newest_matching", "parse_version"]

# Versions and ranges are immutable once parsed, and a fleet names few of them.
_PARSED_CACHE_SIZE = 1024
_NUMBERS = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_COMPARATOR = re.compile(r"^(==|!=|<=|>=|<|>)\s*(\S+)$")


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def parse_version(text: str) -> Version:
    """The version ``text`` names; :class:`VersionError` if it is not one. Cached:
    every call step resolves a range against the same few versions."""
    try:
        version = Version(text.strip())
    except InvalidVersion:
        raise VersionError(f"invalid version {text!r} (expected MAJOR.MINOR.PATCH)") from None
    if version.local is not None or version.epoch:
        raise VersionError(f"invalid version {text!r} (no epoch or local part allowed)")
    return version


def _numbers(text: str, clause: str) -> tuple[int, ...]:
    match = _NUMBERS.match(text)
    if not match:
        raise VersionError(f"invalid version {text!r} in range clause {clause!r}")
    return tuple(int(part) for part in match.groups() if part is not None)


def _dotted(parts: Iterable[int]) -> str:
    return ".".join(str(part) for part in parts)


def _caret(text: str, clause: str) -> str:
    parts = _numbers(text, clause)
    low = _dotted(parts + (0,) * (3 - len(parts)))
    # The first non-zero component given is the one that may not change
    # (npm semantics): ^1.2 -> <2, ^0.2 -> <0.3, ^0.0.3 -> <0.0.4, ^0 -> <1.
    bump = next((i for i, part in enumerate(parts) if part != 0), len(parts) - 1)
    high = [*parts[:bump], parts[bump] + 1]
    return f">={low},<{_dotted(high)}"


def _tilde(text: str, clause: str) -> str:
    parts = _numbers(text, clause)
    low = _dotted(parts + (0,) * (3 - len(parts)))
    bump = 0 if len(parts) == 1 else 1
    high = [*parts[:bump], parts[bump] + 1]
    return f">={low},<{_dotted(high)}"


def _bare(text: str, clause: str) -> str:
    if _NUMBERS.match(text):
        parts = _numbers(text, clause)
        return f"=={text}" if len(parts) == 3 else f"=={_dotted(parts)}.*"
    return f"=={parse_version(text)}"


def _specifier(clause: str) -> str:
    if clause.startswith("^"):
        return _caret(clause[1:].strip(), clause)
    if clause.startswith("~") and not clause.startswith("~="):
        return _tilde(clause[1:].strip(), clause)
    match = _COMPARATOR.match(clause)
    if match:
        operator, version = match.groups()
        parse_version(version)
        return f"{operator}{version}"
    return _bare(clause, clause)


class VersionRange:
    """A parsed range; :meth:`parse` raises :class:`VersionError` naming the bad clause."""

    def __init__(self, text: str, specifiers: SpecifierSet) -> None:
        self.text = text
        self._specifiers = specifiers
        # Decided here rather than left to packaging, whose default has changed
        # between releases.
        self._prereleases = any(
            Version(spec.version.removesuffix(".*")).is_prerelease for spec in specifiers
        )

    @classmethod
    def parse(cls, text: str | None) -> VersionRange:
        return _parse_range((text or "").strip())

    @classmethod
    def _build(cls, source: str) -> VersionRange:
        clauses = [part.strip() for part in source.split(",")] if source else []
        translated = [_specifier(clause) for clause in clauses if clause not in ("", "*")]
        try:
            specifiers = SpecifierSet(",".join(translated))
        except InvalidSpecifier as exc:
            raise VersionError(f"invalid version range {source!r}: {exc}") from None
        return cls(source or "*", specifiers)

    def matches(self, version: Version | str) -> bool:
        parsed = version if isinstance(version, Version) else parse_version(version)
        return self._specifiers.contains(parsed, prereleases=self._prereleases)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VersionRange({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionRange) and self._specifiers == other._specifiers

    def __hash__(self) -> int:
        return hash(self._specifiers)


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _parse_range(source: str) -> VersionRange:
    return VersionRange._build(source)


def newest_matching(
    versions: Iterable[str], version_range: VersionRange | str | None = None
) -> str | None:
    """The newest of ``versions`` (strings, returned as given) inside the range, or None."""
    wanted = (
        version_range if isinstance(version_range, VersionRange)
        else VersionRange.parse(version_range)
    )
    candidates = [(parse_version(text), text) for text in versions]
    matching = [pair for pair in candidates if wanted.matches(pair[0])]
    return max(matching)[1] if matching else None
