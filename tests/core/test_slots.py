"""Hash slots as Redis Cluster computes them: the hash tag, grouping keys by slot (one
group on a single server), and the error naming each key's slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from framework.core.keys import emitted_key, steps_key
from framework.core.slots import check_same_slot, hash_tag, same_slot, slot_groups, slot_of


@pytest.mark.parametrize(("key", "tag"), [
    ("{signals:0}", "signals:0"), ("fleet:steps:{signals:0}:item:a:b:1", "signals:0"),
    ("plain", "plain"), ("empty{}tag", "empty{}tag"), ("a{b}c{d}", "b"), ("open{", "open{"),
])
def test_the_hash_tag_is_the_first_non_empty_brace_pair(key: str, tag: str) -> None:
    assert hash_tag(key) == tag
    assert slot_of(key) == key_slot(tag.encode())


def test_keys_derived_from_a_tagged_stream_share_its_slot() -> None:
    stream = "{signals:3}"
    steps = steps_key(stream, "item:c:i:1")
    assert same_slot([stream, f"{stream}:dlq", steps])
    assert not same_slot(["plain", "plain:dlq"])
    assert slot_of(emitted_key("{alerts}", steps)) == slot_of("{alerts}")
    assert slot_of(emitted_key("alerts", steps)) == slot_of("alerts")


def test_keys_are_grouped_by_slot_only_on_a_cluster() -> None:
    keys = ["{a}:1", "{b}:1", "{a}:2", "{c}", "{b}:2"]
    assert slot_groups(keys, cluster=True) == [[0, 2], [1, 4], [3]]
    assert slot_groups(keys, cluster=False) == [[0, 1, 2, 3, 4]]
    assert slot_groups([], cluster=False) == []


def test_keys_of_several_slots_are_refused_naming_each_slot() -> None:
    with pytest.raises(ValueError, match=r"stream 'x': its keys hash to different Cluster "
                                         r"slots \(x -> \d+, x:dlq -> \d+\)"):
        check_same_slot("stream 'x'", ["x", "x:dlq"])
    check_same_slot("fine", ["{x}", "{x}:dlq"])
