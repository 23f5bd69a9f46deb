"""Stopping a consumer: let the entries in flight finish within ``drain_timeout_s``,
cancel the rest, and hand what was taken but not settled back to the group."""

from __future__ import annotations

import asyncio

from framework.consuming.consumer.context import REDIS_DOWN, ConsumerContext
from framework.consuming.consumer.in_flight import InFlight


async def drain(ctx: ConsumerContext, in_flight: InFlight) -> None:
    """Wait (bounded) for the work in flight, then cancel what is left and wait for it."""
    if not len(in_flight):
        return
    ctx.log.info("draining", in_flight=len(in_flight))
    try:
        await asyncio.wait_for(_all_settled(in_flight), timeout=ctx.options.drain_timeout_s)
    except TimeoutError:
        ctx.log.warning("drain_timed_out", in_flight=len(in_flight))
    in_flight.abandon()
    await asyncio.gather(*in_flight.tasks(), return_exceptions=True)


async def _all_settled(in_flight: InFlight) -> None:
    while len(in_flight) and not in_flight.forced:
        in_flight.changed.clear()
        await in_flight.changed.wait()


async def release_leftovers(ctx: ConsumerContext, in_flight: InFlight) -> None:
    """Entries taken but not settled: make them idle past the visibility timeout, so
    other consumers take them over at once instead of waiting for it."""
    try:
        for stream, entry_ids in in_flight.leftovers_by_stream().items():
            # Those acknowledged meanwhile (their work had finished) are not ours now.
            settled = set(await ctx.member.touch(stream, entry_ids,
                                                 idle_ms=ctx.options.claim_idle_ms))
            released = [entry_id for entry_id in entry_ids if entry_id not in settled]
            if released:
                ctx.log.warning("entries_released", stream=stream, entry_ids=released)
    except REDIS_DOWN as exc:
        ctx.log.warning("release_failed", error=str(exc))
