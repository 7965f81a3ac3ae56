"""The shared-connection lock: order of service, priorities and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus_endpoint import PriorityLock


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_answering_units_go_before_silent_ones_and_each_class_in_order():
    lock = PriorityLock()
    order: list[str] = []

    async def take(name: str, low: bool) -> None:
        await lock.acquire(low_priority=low)
        order.append(name)
        await asyncio.sleep(0)
        lock.release()

    await lock.acquire()
    tasks = [asyncio.create_task(take(name, low)) for name, low in
             (("silent-1", True), ("a", False), ("silent-2", True), ("b", False))]
    await settle()
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "silent-1", "silent-2"]
    assert not lock.locked


async def test_the_holder_asking_again_goes_before_a_silent_unit():
    lock = PriorityLock()
    order: list[str] = []

    async def polls_two_blocks() -> None:
        for block in ("block-1", "block-2"):
            await lock.acquire()
            order.append(block)
            await asyncio.sleep(0)
            lock.release()

    async def silent() -> None:
        await lock.acquire(low_priority=True)
        order.append("silent")
        lock.release()

    await lock.acquire()
    tasks = [asyncio.create_task(polls_two_blocks()), asyncio.create_task(silent())]
    await settle()
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["block-1", "block-2", "silent"]


async def test_cancelled_waiters_do_not_keep_the_lock():
    lock = PriorityLock()
    await lock.acquire()
    waiting = asyncio.create_task(lock.acquire())
    other = asyncio.create_task(lock.acquire(low_priority=True))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    lock.release()
    await asyncio.wait_for(other, 1)
    lock.release()
    assert not lock.locked


async def test_a_waiter_cancelled_as_it_is_handed_the_lock_passes_it_on():
    lock = PriorityLock()
    await lock.acquire()
    first = asyncio.create_task(lock.acquire())
    second = asyncio.create_task(lock.acquire())
    await settle()
    lock.release()  # hands the lock to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert lock.locked
    lock.release()
    assert not lock.locked
