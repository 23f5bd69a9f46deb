"""The pause before a broker source connects again doubles with each failure in a
row, stops at its cap, and is gone after a success."""

from __future__ import annotations

from providers.reconnect import ReconnectBackoff


def test_the_pause_doubles_up_to_its_cap_and_resets_on_success() -> None:
    backoff = ReconnectBackoff(first_s=0.5, max_s=3.0)
    delays = [backoff.delay_s]
    for _ in range(5):
        backoff.failed()
        delays.append(backoff.delay_s)
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.succeeded()
    assert backoff.delay_s == 0.0
