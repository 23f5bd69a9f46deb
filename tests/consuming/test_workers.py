"""The consumer's worker tasks: entries that never wait share one task step, an entry
waiting on I/O never holds back the next, at most ``size`` run at once, and a forced
stop ends the workers between entries even when a cancellation was swallowed."""

from __future__ import annotations

import asyncio
import contextlib

from framework.consuming.consumer.in_flight import Work
from framework.consuming.consumer.workers import Workers
from framework.consuming.delivery import Delivery


def _work(index: int) -> Work:
    return Work(Delivery("s", f"{index}-0", {}, "g", "c"), None)


async def test_entries_that_never_wait_run_on_one_task() -> None:
    ran: list[tuple[str, asyncio.Task[object] | None]] = []

    async def run(work: Work) -> None:
        ran.append((work.delivery.entry_id, asyncio.current_task()))

    workers = Workers(run, size=64, stopped=lambda: False)
    for index in range(64):
        workers.submit(_work(index))
    await asyncio.sleep(0.01)
    assert [entry_id for entry_id, _ in ran] == [f"{i}-0" for i in range(64)]
    assert len({task for _, task in ran}) == 1
    await workers.close()


async def test_an_entry_waiting_on_io_does_not_hold_back_the_others() -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def run(work: Work) -> None:
        started.append(work.delivery.entry_id)
        if work.delivery.entry_id == "0-0":
            await release.wait()  # a slow target

    workers = Workers(run, size=4, stopped=lambda: False)
    for index in range(10):
        workers.submit(_work(index))
    await asyncio.sleep(0.05)
    assert started == [f"{i}-0" for i in range(10)]  # all ran while the first waits
    release.set()
    await workers.close()


async def test_at_most_size_entries_run_at_once_and_the_rest_follow() -> None:
    running = 0
    most = 0
    done: list[str] = []
    all_done = asyncio.Event()

    async def run(work: Work) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(work.delivery.entry_id)
        if len(done) in (12, 15):
            all_done.set()

    workers = Workers(run, size=3, stopped=lambda: False)
    for index in range(12):
        workers.submit(_work(index))
    async with asyncio.timeout(5):
        await all_done.wait()
    assert most == 3
    # Idle workers are woken for later entries (no worker is lost to an empty queue).
    all_done.clear()
    for index in range(12, 15):
        workers.submit(_work(index))
    async with asyncio.timeout(5):
        await all_done.wait()
    assert sorted(done) == sorted(f"{i}-0" for i in range(15))
    await workers.close()


async def test_a_forced_stop_ends_a_worker_between_entries_even_if_cancellation_is_lost(
) -> None:
    forced = False
    ran: list[str] = []

    async def run(work: Work) -> None:
        nonlocal forced
        ran.append(work.delivery.entry_id)
        if work.delivery.entry_id == "0-0":
            forced = True  # the stop arrives while this entry runs...
            # ...and its cancellation is swallowed (as redis-py can on Python 3.11).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    workers = Workers(run, size=1, stopped=lambda: forced)
    for index in range(5):
        workers.submit(_work(index))
    await asyncio.sleep(0.01)
    [worker] = [task for task in asyncio.all_tasks() if task.get_name() == "consumer-worker"]
    worker.cancel()
    async with asyncio.timeout(5):
        await asyncio.wait([worker])
    assert ran == ["0-0"]  # the worker ended by itself; the queued entries never started
    await workers.close()


async def test_close_ends_idle_workers() -> None:
    async def run(work: Work) -> None:
        await asyncio.sleep(0)

    workers = Workers(run, size=8, stopped=lambda: False)
    for index in range(8):
        workers.submit(_work(index))
    await asyncio.sleep(0.01)
    tasks = [task for task in asyncio.all_tasks() if task.get_name() == "consumer-worker"]
    assert tasks
    await workers.close()
    assert all(task.done() for task in tasks)
