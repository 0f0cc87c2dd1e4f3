"""Coalescing without a window: a lone call goes at once, concurrent ones share calls."""

from __future__ import annotations

import asyncio

import pytest

from ragline.core.coalescing import Coalescer
from ragline.core.errors import Overloaded


class Recorder:
    def __init__(self, delay_s: float = 0.01) -> None:
        self.calls: list[tuple[list[int], object]] = []
        self.delay_s = delay_s

    async def __call__(self, items: list[int], key: object) -> list[object]:
        self.calls.append((list(items), key))
        await asyncio.sleep(self.delay_s)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_a_lone_call_runs_at_once_as_a_batch_of_one():
    run = Recorder(delay_s=0)
    coalescer = Coalescer("test", run)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await coalescer.submit(3) == 30
    assert run.calls == [([3], None)]
    assert loop.time() - started < 0.05  # no waiting window


async def test_calls_arriving_while_one_runs_share_the_next_call_and_keep_their_results():
    run = Recorder()
    sizes: list[int] = []
    coalescer = Coalescer("test", run, max_batch=8)
    coalescer.on_batch = sizes.append
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert sizes == [1, 8, 8, 3]  # the first at once, alone; the others queued behind it


async def test_different_keys_never_share_a_call():
    run = Recorder()
    coalescer = Coalescer("test", run)
    await asyncio.gather(*(coalescer.submit(i, key=i % 2) for i in range(10)))
    for items, key in run.calls:
        assert {i % 2 for i in items} == {key}


async def test_an_exception_result_fails_its_caller_only_and_a_raised_one_fails_the_batch():
    coalescer = Coalescer("test", Recorder())
    results = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(-1), coalescer.submit(2), return_exceptions=True
    )
    assert results[0] == 10 and isinstance(results[1], ValueError) and results[2] == 20

    async def broken(items: list[int], key: object) -> list[int]:
        await asyncio.sleep(0.01)
        raise RuntimeError("down")

    failing = Coalescer("test", broken)
    outcomes = await asyncio.gather(*(failing.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await Coalescer("test", Recorder()).submit(4) == 40  # and the next call works


async def test_a_full_queue_is_refused_at_once():
    coalescer = Coalescer("test", Recorder(delay_s=0.05), max_batch=2, max_queue=4)
    outcomes = await asyncio.gather(*(coalescer.submit(i) for i in range(10)), return_exceptions=True)
    assert any(isinstance(o, Overloaded) for o in outcomes)
    assert [o for o in outcomes if not isinstance(o, Overloaded)] == [
        i * 10 for i in range(10) if outcomes[i] == i * 10
    ]


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        Coalescer("test", Recorder(), max_batch=0)


async def test_with_a_linger_items_arriving_a_few_at_a_time_go_in_one_batch():
    run = Recorder(delay_s=0)
    sizes: list[int] = []
    coalescer = Coalescer("test", run, max_batch=32, linger_s=0.05)
    coalescer.on_batch = sizes.append

    async def trickle() -> list[int]:
        tasks = []
        for i in range(12):  # three at a time, 5 ms apart: well inside the linger
            tasks.append(asyncio.ensure_future(coalescer.submit(i)))
            if i % 3 == 2:
                await asyncio.sleep(0.005)
        return list(await asyncio.gather(*tasks))

    assert await trickle() == [i * 10 for i in range(12)]
    assert sizes == [12]  # without the linger: the first alone, then the rest
    assert await coalescer.submit(5) == 50  # and the next lone item still runs, after its linger


async def test_a_lingering_batch_cancelled_cancels_its_callers_and_frees_the_key():
    run = Recorder(delay_s=0)
    coalescer = Coalescer("test", run, linger_s=10)
    waiting = [asyncio.ensure_future(coalescer.submit(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    for task in list(coalescer._tasks):
        task.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert run.calls == []
    coalescer.linger_s = 0
    assert await coalescer.submit(4) == 40  # the key is free again
