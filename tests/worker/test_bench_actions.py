"""``bench consume``'s rows for the network capabilities: the worker process sends
each event through ``email_send`` / ``slack_message`` to its peer process, and only
acknowledged deliveries count as completions."""

from __future__ import annotations

import pytest

from framework.testing import RedisServer
from worker.bench.consume import ACTION_PEERS, SYSTEMS, _throughput


@pytest.mark.slow
@pytest.mark.parametrize("system", sorted(ACTION_PEERS))
def test_a_network_capability_row_counts_every_delivered_event(
        redis_server: RedisServer, system: str) -> None:
    assert system in SYSTEMS
    row = _throughput(system, redis_server.url, 40, 8)
    assert row is not None
    assert row["system"] == system and row["events"] == 40 and row["events_per_s"] > 0
