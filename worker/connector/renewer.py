"""Who renews a worker's lease: by default the worker's own task on the event loop;
the in-process fleet hands every worker one shared renewer on a thread of its own
(``worker.fleet.lease_renewals``), so that a busy loop cannot let leases expire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from framework.polling import Lease


class LeaseRenewer(Protocol):
    def keep(self, lease: Lease, on_lost: Callable[[str], None]) -> None:
        """Renew ``lease`` until dropped; ``on_lost(event)`` on the event loop when it
        is gone, taken, or could not be renewed for a full TTL."""

    def drop(self, lease: Lease) -> None: ...
