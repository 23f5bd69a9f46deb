"""cancel_and_wait: a task that swallows a cancellation is cancelled again until it ends."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from framework.core.cancellation import cancel_and_wait


async def test_a_task_that_swallows_the_first_cancellation_still_ends() -> None:
    async def swallows_once() -> None:
        # What asyncio.wait_for does on 3.11 when its inner task has just finished:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        await asyncio.sleep(10)

    task = asyncio.create_task(swallows_once())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), timeout=5)
    assert task.cancelled()


@pytest.mark.slow
async def test_loops_sending_through_wait_for_always_stop() -> None:
    async def beats() -> None:  # like redis-py: each write inside asyncio.wait_for
        while True:
            await asyncio.wait_for(asyncio.sleep(0), timeout=1)

    for _ in range(10):  # a plain cancel() is swallowed most times here (3.11)
        task = asyncio.create_task(beats())
        await asyncio.sleep(0.001)
        await asyncio.wait_for(cancel_and_wait(task), timeout=5)
        assert task.done()


async def test_finished_and_failed_tasks_are_waited_for_without_raising() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    done = asyncio.create_task(asyncio.sleep(0))
    failed = asyncio.create_task(fails())
    await asyncio.sleep(0.01)
    await cancel_and_wait(done, failed)
    assert done.done() and isinstance(failed.exception(), RuntimeError)


async def test_the_caller_being_cancelled_is_not_swallowed() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    waiter = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    released.set()
    await asyncio.wait_for(cancel_and_wait(task), timeout=5)
