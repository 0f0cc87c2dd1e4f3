"""The adaptive LLM limit: slow start, halving on late answers, busy callers told at once."""

import asyncio

import pytest

from ragline.adapters.generators.admission import AdaptiveLimit, LLMBusy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fast_requests_grow_the_limit_and_late_ones_halve_it_once_per_round():
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    assert limit.slots == 1
    for _ in range(7):
        limit.observe(0.5, target_s=2.0)  # slow start: +1 each
    assert limit.slots == 8
    limit.observe(3.0, target_s=2.0)
    assert limit.slots == 4
    limit.observe(3.0, target_s=2.0)  # the same round (within 3 s): not halved again
    assert limit.slots == 4
    clock.now += 3.0
    limit.observe(3.0, target_s=2.0)
    assert limit.slots == 2
    for _ in range(4):  # after slow start: about +1 per round of `limit` requests
        limit.observe(0.5, target_s=2.0)
    assert limit.slots == 3
    limit.restart()
    assert limit.slots == 1


def test_the_limit_stays_within_its_bounds():
    limit = AdaptiveLimit(3, initial=10)
    assert limit.slots == 3
    for _ in range(10):
        limit.observe(0.1, target_s=1.0)
    assert limit.slots == 3
    clock = Clock()
    limit = AdaptiveLimit(3, initial=2, clock=clock)
    for _ in range(5):
        clock.now += 10
        limit.observe(9.0, target_s=1.0)
    assert limit.slots == 1


async def test_a_caller_without_a_slot_hears_busy_after_the_queue_timeout_and_takes_nothing():
    limit = AdaptiveLimit(8, initial=1, queue_timeout_s=0.05)
    async with limit.slot():
        started = asyncio.get_running_loop().time()
        with pytest.raises(LLMBusy, match="LLM busy: 1 prompts in flight"):
            async with limit.slot():
                pass
        assert asyncio.get_running_loop().time() - started < 1
        assert limit.in_flight == 1
    assert limit.in_flight == 0


async def test_a_waiting_caller_gets_the_slot_as_soon_as_it_frees():
    limit = AdaptiveLimit(8, initial=1, queue_timeout_s=5)
    order: list[str] = []

    async def hold(name: str, seconds: float) -> None:
        async with limit.slot():
            order.append(name)
            await asyncio.sleep(seconds)

    await asyncio.gather(hold("a", 0.05), hold("b", 0))
    assert order == ["a", "b"] and limit.in_flight == 0


async def test_a_batch_heavier_than_the_limit_runs_alone():
    limit = AdaptiveLimit(8, initial=2, queue_timeout_s=0.05)
    async with limit.slot(5):
        assert limit.in_flight == 5
        with pytest.raises(LLMBusy):
            async with limit.slot(1):
                pass
    async with limit.slot(2):
        assert limit.in_flight == 2
