"""Upload parsing shared between tenants: round-robin turns, a slot always left for
others, a deadline that stops the child, a memory cap, a bounded queue."""

from __future__ import annotations

import asyncio
import time

import pytest

from ragline.core.errors import Overloaded
from ragline.service.parse_lanes import ParseDeadline, ParseLanes


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def _allocate(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


async def test_a_heavy_tenant_leaves_a_slot_so_another_tenant_is_served_at_once():
    lanes = ParseLanes(workers=2, queue=32, deadline_s=10, processes=False)
    done: list[str] = []

    async def call(tenant: str, seconds: float) -> None:
        await lanes.run(tenant, time.sleep, seconds)
        done.append(tenant)

    heavy = [asyncio.create_task(call("b", 0.3)) for _ in range(6)]
    await until(lambda: lanes.waiting >= 4)  # one of b's files parsing, the others waiting
    await call("a", 0)
    assert done == ["a"]  # served while b's first file was still being parsed, not after b's six
    await asyncio.gather(*heavy)
    lanes.close()


async def test_waiting_tenants_take_turns():
    lanes = ParseLanes(workers=1, queue=32, deadline_s=10, processes=False)
    order: list[str] = []

    async def call(tenant: str) -> None:
        await lanes.run(tenant, time.sleep, 0.05)
        order.append(tenant)

    tasks = [asyncio.create_task(call("b")) for _ in range(4)]
    await until(lambda: lanes.waiting >= 2)
    tasks += [asyncio.create_task(call("a")) for _ in range(2)]
    await asyncio.gather(*tasks)
    assert order[:4] in (["b", "b", "a", "b"], ["b", "a", "b", "a"])  # a is not served after all of b
    assert order.index("a") <= 2
    lanes.close()


async def test_a_file_past_its_deadline_is_its_own_error_and_its_child_is_stopped():
    lanes = ParseLanes(workers=2, queue=4, deadline_s=1.5)
    try:
        started = time.perf_counter()
        with pytest.raises(ParseDeadline, match="longer than 1.5s"):
            await lanes.run("b", time.sleep, 60)
        assert lanes.killed == 1 and time.perf_counter() - started < 30  # not the 60 s the call wanted
        assert await lanes.run("b", abs, -7) == 7  # the slot has a new child
    finally:
        lanes.close()


async def test_a_child_past_its_memory_cap_fails_that_call_only():
    lanes = ParseLanes(workers=2, queue=4, deadline_s=30, memory_mb=400)
    try:
        with pytest.raises(MemoryError):
            await lanes.run("b", _allocate, 1024)
        assert await lanes.run("b", _allocate, 10) == 10 * 1024 * 1024
    finally:
        lanes.close()


async def test_a_full_queue_refuses_at_once():
    lanes = ParseLanes(workers=1, queue=2, deadline_s=10, processes=False)
    running = [asyncio.create_task(lanes.run("b", time.sleep, 0.3)) for _ in range(3)]
    await until(lambda: lanes.waiting == 2)
    with pytest.raises(Overloaded):
        await lanes.run("c", abs, 1)
    await asyncio.gather(*running)
    lanes.close()
