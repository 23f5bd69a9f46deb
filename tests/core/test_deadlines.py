"""Deadlines: asyncio.timeout()'s semantics, with one timer for the calls of a slot."""

from __future__ import annotations

import asyncio
import time

import pytest

from framework.core.deadlines import Deadlines, outside_deadline

RESOLUTION_S = 0.02


async def test_a_block_that_takes_too_long_raises_timeout_error_within_one_resolution() -> None:
    deadlines = Deadlines(RESOLUTION_S)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out after 0.05 s"), deadlines.after(0.05):
        await asyncio.sleep(5)
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 0.05 + RESOLUTION_S + 0.05  # scheduling slack on a busy machine


async def test_a_block_that_finishes_in_time_returns_and_is_never_cancelled_later() -> None:
    deadlines = Deadlines(RESOLUTION_S)
    with deadlines.after(0.05):
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.1)  # past the slot's timer: it must not cancel this task now
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_concurrent_blocks_share_timers_and_each_gets_its_own_outcome() -> None:
    deadlines = Deadlines(RESOLUTION_S)

    async def call(duration_s: float) -> str:
        try:
            with deadlines.after(0.5):
                await asyncio.sleep(duration_s)
        except TimeoutError:
            return "timeout"
        return "ok"

    durations = [0.001 * (i % 5) if i % 2 else 5.0 for i in range(200)]
    outcomes = await asyncio.gather(*(call(d) for d in durations))
    assert outcomes == ["ok" if i % 2 else "timeout" for i in range(200)]
    assert len(asyncio.get_running_loop()._scheduled) < 10  # type: ignore[attr-defined]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(RESOLUTION_S)
    entered = asyncio.Event()

    async def guarded() -> None:
        with deadlines.after(10):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_cancellation_during_expiry_is_not_turned_into_a_timeout() -> None:
    deadlines = Deadlines(RESOLUTION_S)
    entered = asyncio.Event()

    async def guarded() -> None:
        with deadlines.after(0.03):
            entered.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                await asyncio.sleep(0.2)  # cleanup, during which the deadline expires
                raise

    task = asyncio.create_task(guarded())
    await entered.wait()
    task.cancel()  # the caller's cancellation comes first
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_a_task_it_says_so() -> None:
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()

    def callback() -> None:  # runs on the loop, in no task
        try:
            Deadlines().after(1).__enter__()
        except RuntimeError as exc:
            outcome.set_result(str(exc))
        else:
            outcome.set_result("no error")

    loop.call_soon(callback)
    assert await outcome == "Deadlines.after() must be used inside a task"


def test_one_instance_serves_successive_event_loops() -> None:
    deadlines = Deadlines(1.0)  # a wide slot: both calls below almost surely share it

    async def left_pending() -> None:
        with deadlines.after(0.01):
            await asyncio.sleep(0)  # returns at once; the slot's timer stays armed

    async def too_long() -> None:
        with deadlines.after(0.01):
            await asyncio.sleep(5)

    asyncio.run(left_pending())  # closes its loop with the timer never fired
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(too_long())
    assert time.monotonic() - started < 2.5


def test_a_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resolution_s must be positive, got 0"):
        Deadlines(0)


async def test_time_outside_the_deadline_is_not_counted_and_the_rest_still_is() -> None:
    deadlines = Deadlines(RESOLUTION_S)
    with deadlines.after(0.1):
        with outside_deadline():
            await asyncio.sleep(0.3)  # three timeouts, on our own infrastructure
        await asyncio.sleep(0.01)  # within what is left
    with pytest.raises(TimeoutError), deadlines.after(0.1):
        with outside_deadline():
            await asyncio.sleep(0.01)
        await asyncio.sleep(5)  # the time left still bounds the target


async def test_outside_any_deadline_outside_deadline_does_nothing() -> None:
    with outside_deadline():
        await asyncio.sleep(0)
