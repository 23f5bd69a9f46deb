"""Where requests wait for their commit: the :class:`PushSource` side of the webhook.

Handlers *offer* deliveries; the push connector *receives* them in batches, appends
each batch in one fenced step, then *acknowledges* it, which answers every request
of the batch 2xx. ``stop`` (lease lost, a failed commit, shutdown) settles every
delivery not acknowledged as not kept, so its request is answered 503: a 2xx is
never given for data the stream does not hold. Until the next ``start`` the inbox
refuses new deliveries (503 at once) rather than queueing what it may never keep.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

from framework.polling import Batch
from providers.webhook.intake import Delivery


class Inbox:
    def __init__(self, max_pending: int) -> None:
        self._max_pending = max_pending
        self._queue: deque[Delivery] = deque()
        self._taken: set[Delivery] = set()
        self._arrived = asyncio.Event()
        self.accepting = False

    @property
    def pending(self) -> int:
        """Deliveries offered and not settled yet (queued or being committed)."""
        return len(self._queue) + len(self._taken)

    def offer(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; False when the inbox is stopped or full (answer 503)."""
        if not self.accepting or self.pending >= self._max_pending:
            return False
        self._queue.append(delivery)
        self._arrived.set()
        return True

    def withdraw(self, delivery: Delivery) -> None:
        """Its request gave up (timed out): drop it unless a commit already has it."""
        try:
            self._queue.remove(delivery)
        except ValueError:
            return
        delivery.settle(False)

    # -- PushSource ----------------------------------------------------------------

    async def start(self, positions: Mapping[str, str]) -> None:
        self.accepting = True

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Delivery]:
        if not self._queue:
            self._arrived.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._arrived.wait()
            except TimeoutError:
                return Batch()
        # Taken without an await: a cancellation cannot lose a delivery in between.
        taken = [self._queue.popleft() for _ in range(min(max_messages, len(self._queue)))]
        self._taken.update(taken)
        return Batch(taken)

    async def acknowledge(self, batch: Batch[Delivery]) -> None:
        for delivery in batch.messages:
            self._taken.discard(delivery)
            delivery.settle(True)

    async def stop(self) -> None:
        self.accepting = False
        for delivery in [*self._queue, *self._taken]:
            delivery.settle(False)
        self._queue.clear()
        self._taken.clear()
