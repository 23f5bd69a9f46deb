"""The sliced JSON decoder reads what json.loads reads, and refuses what it refuses,
whatever chunks the body came in and however small its window's pieces."""

from __future__ import annotations

import json

import pytest

from framework.polling.json_slices import loads_in_slices

BIG = '{"features": [' + ",".join(json.dumps({"id": n, "p": {"q": [n]}}) for n in range(5000)) \
    + "]}"
VALID = [
    "[]", "{}", " [1, 2 ,3] ", '"s"', "3", "null", '{"a": [1, {"b": [2]}], "c": {"d": [1]}}',
    '[{"id": "x", "tags": ["a", "b"]}, {"id": "y"}]',
    # Tokens that a window's end can cut: numbers, literals, escapes, surrogate pairs,
    # multi-byte characters, member names.
    '[12345678901234567890, -1.5e-300, true, false, null, -Infinity, NaN]',
    '{"caf\\u00e9 \\ud83d\\ude00": ["\\"quoted\\"", "\\\\", "\\u00e9t\\u00e9"]}',
    '{"long member name here": [{"n\u00e9": "\u00e9\u00e8\u4e2d\U0001f600"}], "x": 1}',
]
INVALID = ["", "[1,]", '{"a" 1}', "[1] x", '[{"a":1}', '{"a":[1,2]', "{1: 2}", "[1 2]",
           '[1, x, 3]', '["abc', '[tru]', '{"a": [1, 2], "b"}']
# Piece sizes down to one byte, so that every token above is cut somewhere.
PIECES = [1, 2, 3, 7, 64 * 1024]


def chunked(text: str, size: int) -> list[bytes]:
    body = text.encode()
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


@pytest.mark.parametrize("piece_bytes", PIECES)
@pytest.mark.parametrize("text", VALID)
async def test_reads_what_json_loads_reads(text: str, piece_bytes: int) -> None:
    expected = json.loads(text)
    assert await loads_in_slices([text.encode()], piece_bytes=piece_bytes) == expected
    # The same body arriving in small chunks of another size.
    assert await loads_in_slices(chunked(text, 5), piece_bytes=piece_bytes) == expected


@pytest.mark.parametrize("piece_bytes", [100, 4096, 64 * 1024])
async def test_reads_a_body_of_thousands_of_items_whatever_its_pieces(piece_bytes: int) -> None:
    assert await loads_in_slices(chunked(BIG, 1000), piece_bytes=piece_bytes) == json.loads(BIG)


@pytest.mark.parametrize("piece_bytes", PIECES)
@pytest.mark.parametrize("text", INVALID)
async def test_refuses_what_json_loads_refuses_with_the_position(
    text: str, piece_bytes: int
) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(ValueError, match="char"):
        await loads_in_slices(chunked(text, 3), piece_bytes=piece_bytes)


async def test_an_error_names_its_position_in_the_whole_body() -> None:
    text = "[" + ",".join(["1"] * 10_000) + ", x]"
    with pytest.raises(ValueError, match=f"at char {text.index('x')}"):
        await loads_in_slices(chunked(text, 1000), piece_bytes=4096)


async def test_a_byte_order_mark_is_skipped_and_bad_utf8_is_refused_with_its_byte() -> None:
    assert await loads_in_slices([b"\xef\xbb", b"\xbf[1]"], piece_bytes=1) == [1]
    with pytest.raises(ValueError, match=r"not UTF-8.*at byte 5"):
        await loads_in_slices([b'["ab', b'c\xff"]'], piece_bytes=2)


async def test_an_item_far_bigger_than_a_piece_is_read_whole() -> None:
    item = {"blob": "x" * 200_000, "n": list(range(10_000))}
    text = json.dumps({"features": [item, item]})
    assert await loads_in_slices(chunked(text, 4096), piece_bytes=512) == json.loads(text)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"])
async def test_nesting_too_deep_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        await loads_in_slices([text.encode()])
