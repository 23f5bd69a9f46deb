"""Version parsing and ranges as rules and the catalog write them."""

from __future__ import annotations

import pytest

from framework.core.errors import ConfigError, VersionError
from framework.core.versions import VersionRange, newest_matching, parse_version

VERSIONS = ["0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.0.5", "1.1.0",
            "1.1.7", "1.2.0", "1.2.0rc1", "2.0.0", "2.1.3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", [v for v in VERSIONS if v != "1.2.0rc1"]),
        ("", [v for v in VERSIONS if v != "1.2.0rc1"]),
        ("^1.1", ["1.1.0", "1.1.7", "1.2.0"]),
        ("^1", ["1.0.0", "1.0.5", "1.1.0", "1.1.7", "1.2.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"]),
        ("^0.0.3", ["0.0.3"]),
        ("~1.1", ["1.1.0", "1.1.7"]),
        ("~1", ["1.0.0", "1.0.5", "1.1.0", "1.1.7", "1.2.0"]),
        (">=1.0,<2", ["1.0.0", "1.0.5", "1.1.0", "1.1.7", "1.2.0"]),
        (">= 1.0 , < 2", ["1.0.0", "1.0.5", "1.1.0", "1.1.7", "1.2.0"]),
        ("<1.1.0", ["0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.0.5"]),
        ("1.1.7", ["1.1.7"]),
        ("==1.1.7", ["1.1.7"]),
        ("1.1", ["1.1.0", "1.1.7"]),
        ("2", ["2.0.0", "2.1.3"]),
        (">1.1.0,!=1.1.7,<2", ["1.2.0"]),
        (">=1.2.0rc1,<1.3", ["1.2.0", "1.2.0rc1"]),
    ],
)
def test_range_matches_exactly_the_versions_it_names(text: str, expected: list[str]) -> None:
    version_range = VersionRange.parse(text)
    assert sorted(v for v in VERSIONS if version_range.matches(v)) == sorted(expected)


def test_caret_and_comparators_are_the_same_range() -> None:
    assert VersionRange.parse("^1.0") == VersionRange.parse(">=1.0.0,<2")
    assert VersionRange.parse("^1.0") != VersionRange.parse("^1.1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("^1.1", "1.2.0"), (">=1.0,<2", "1.2.0"), ("<1.1.0", "1.0.5"), ("*", "2.1.3"),
     (None, "2.1.3"), ("~0.2", "0.2.9"), ("1.0.0", "1.0.0")],
)
def test_newest_matching_returns_the_highest_version_in_the_range(
    text: str | None, expected: str
) -> None:
    assert newest_matching(VERSIONS, text) == expected


def test_newest_matching_compares_numerically_not_as_text() -> None:
    assert newest_matching(["1.9.0", "1.10.0", "1.2.0"], "^1") == "1.10.0"


def test_newest_matching_is_none_when_nothing_matches() -> None:
    assert newest_matching(VERSIONS, "^3") is None
    assert newest_matching([], "*") is None


def test_newest_matching_returns_the_string_as_given() -> None:
    assert newest_matching(["1.0", "1.0.1"], "<1.0.1") == "1.0"


def test_prerelease_sorts_before_its_release() -> None:
    assert parse_version("1.2.0rc1") < parse_version("1.2.0")
    assert parse_version("1.2.0-rc.1") == parse_version("1.2.0rc1")


@pytest.mark.parametrize("text", ["abc", "1.x", "", "1.0.0+local", "1!2.0.0"])
def test_invalid_version_is_refused_naming_it(text: str) -> None:
    with pytest.raises(VersionError, match="invalid version"):
        parse_version(text)


@pytest.mark.parametrize("text", ["^abc", ">=1.0,<two", "~x", "^1.2.3.4", ">>1", "1.0,banana"])
def test_invalid_range_is_refused_naming_the_clause(text: str) -> None:
    with pytest.raises(VersionError) as caught:
        VersionRange.parse(text)
    assert "invalid version" in str(caught.value)


def test_version_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigError):
        VersionRange.parse("^nope")


def test_matches_refuses_an_invalid_version() -> None:
    with pytest.raises(VersionError):
        VersionRange.parse("*").matches("not-a-version")
