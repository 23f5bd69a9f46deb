"""The stream consumer: reads streams through a Redis consumer group and hands each
entry to an :class:`~framework.consuming.delivery.EventHandler`.

Lifecycle (arq-style): ``await consumer.run()`` returns after ``consumer.stop()``
and a bounded drain; a second ``stop()`` cancels the work still running::

    XREADGROUP >          (never more than max_in_flight entries held)  ─┐
    XAUTOCLAIM idle>claim_idle_ms (entries of crashed consumers)        ─┴─> handler
        returned               -> XACK, with the records the handler returned (one script)
        DeadLetterError        -> dead letter + XACK (one Lua script)
        other error            -> stays pending; redelivered; dead-lettered after
                                  max_deliveries deliveries
    heartbeat, every claim_idle_ms/3: XCLAIM ... JUSTID of the entries still held,
        only if still ours (consumer_touch.lua), so XAUTOCLAIM never steals them

With ``order_by``, entries with the same key run one at a time in stream order
(within this consumer), and a failing entry is retried in place (its key waits)
until it succeeds or is dead-lettered. See docs/consumers.md for the guarantees.

Modules: ``consumer`` (the run, and each entry's handling), ``reading`` (XREADGROUP,
XAUTOCLAIM, the in-flight bound), ``settling`` (batched XACK, dead letters),
``heartbeat``, ``draining`` (stop), ``in_flight`` (the entries held), ``context``
(what they share).
"""

from framework.consuming.consumer.consumer import Consumer
from framework.consuming.options import ConsumerOptions, default_consumer_name, order_key

__all__ = ["Consumer", "ConsumerOptions", "default_consumer_name", "order_key"]
