"""The sliced JSON decoder reads what json.loads reads, and refuses what it refuses."""

from __future__ import annotations

import json

import pytest

from framework.polling.json_slices import loads_in_slices

VALID = [
    "[]", "{}", " [1, 2 ,3] ", '"s"', "3", "null", '{"a": [1, {"b": [2]}], "c": {"d": [1]}}',
    '[{"id": "x", "tags": ["a", "b"]}, {"id": "y"}]', '{"features": [' + ",".join(
        json.dumps({"id": n, "p": {"q": [n]}}) for n in range(5000)) + "]}",
]
INVALID = ["", "[1,]", '{"a" 1}', "[1] x", '[{"a":1}', '{"a":[1,2]', "{1: 2}", "[1 2]"]


@pytest.mark.parametrize("text", VALID)
async def test_reads_what_json_loads_reads(text: str) -> None:
    assert await loads_in_slices(text) == json.loads(text)


@pytest.mark.parametrize("text", INVALID)
async def test_refuses_what_json_loads_refuses_with_the_position(text: str) -> None:
    with pytest.raises(ValueError, match="char"):
        await loads_in_slices(text)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"])
async def test_nesting_too_deep_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        await loads_in_slices(text)
