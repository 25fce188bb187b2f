"""``FairSlots``: the rules by which the proxy pool shares its slots between processors."""

from __future__ import annotations

import asyncio

import pytest

from session_manager.errors import ProcessorTimeout
from session_manager.proxy.slots import FairSlots


async def _fill(slots: FairSlots, owner: str, count: int) -> list[asyncio.Task[None]]:
    """``count`` acquisitions for ``owner``; those that got a slot are done after one turn."""
    tasks = [asyncio.create_task(slots.acquire(owner, 30)) for _ in range(count)]
    await asyncio.sleep(0)
    return tasks


async def test_an_owner_holds_at_most_its_cap() -> None:
    slots = FairSlots(capacity=16, per_owner=4)
    tasks = await _fill(slots, "a", 6)
    assert slots.held("a") == 4
    assert sum(t.done() for t in tasks) == 4
    slots.release("a")
    await asyncio.sleep(0)
    assert slots.held("a") == 4
    assert sum(t.done() for t in tasks) == 5
    for task in tasks:
        task.cancel()


async def test_the_last_quarter_is_kept_for_light_owners() -> None:
    slots = FairSlots(capacity=16, per_owner=8)
    heavy = [await _fill(slots, owner, 8) for owner in ("a", "b", "c")]
    # 12 open slots: a 8, b 4; then only owners under 2 may take one: c takes 2.
    assert (slots.held("a"), slots.held("b"), slots.held("c")) == (8, 4, 2)
    assert slots.in_use == 14
    await slots.acquire("light", 1)  # at once, with the heavy ones waiting
    assert slots.in_use == 15
    for tasks in heavy:
        for task in tasks:
            task.cancel()
    await asyncio.sleep(0)


async def test_freed_slots_go_to_waiting_owners_in_turn() -> None:
    slots = FairSlots(capacity=2, per_owner=2)
    first = await _fill(slots, "a", 2)
    assert all(t.done() for t in first)
    many = await _fill(slots, "b", 5)
    few = await _fill(slots, "c", 1)
    slots.release("a")
    slots.release("a")
    await asyncio.sleep(0)
    assert (slots.held("b"), slots.held("c")) == (1, 1)  # not both to b, who queued first
    assert few[0].done()
    for task in many:
        task.cancel()
    await asyncio.sleep(0)


async def test_a_wait_ends_with_504_and_leaves_no_trace() -> None:
    slots = FairSlots(capacity=1, per_owner=1)
    await slots.acquire("a", 1)
    with pytest.raises(ProcessorTimeout):
        await slots.acquire("b", 0.05)
    slots.release("a")
    assert slots.in_use == 0
    await slots.acquire("b", 1)
    assert slots.held("b") == 1
