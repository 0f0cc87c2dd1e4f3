"""The micro-batcher gathers concurrent items into one call and routes results back."""

import asyncio

import pytest

from ragline.adapters.generators.batching import MicroBatcher


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, items: list[str], params) -> list[str]:
        self.calls.append(list(items))
        await asyncio.sleep(0)
        if self.fail:
            raise self.fail
        return [f"{item}!{params}" for item in items]


async def test_concurrent_items_go_out_as_one_call_and_results_come_back_in_order():
    send = Recorder()
    batcher = MicroBatcher(send, max_batch=32, max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit(f"p{i}", 7) for i in range(10)))
    assert results == [f"p{i}!7" for i in range(10)]
    assert send.calls == [[f"p{i}" for i in range(10)]]


async def test_a_full_batch_is_sent_without_waiting_and_the_rest_follows():
    send = Recorder()
    batcher = MicroBatcher(send, max_batch=4, max_wait_ms=10_000)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(str(i)) for i in range(8))), 1)
    assert len(results) == 8 and [len(c) for c in send.calls] == [4, 4]


async def test_items_with_different_parameters_are_batched_apart():
    send = Recorder()
    batcher = MicroBatcher(send, max_batch=32, max_wait_ms=5)
    await asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), batcher.submit("c", 1))
    assert sorted(send.calls) == [["a", "c"], ["b"]]


async def test_a_failed_call_fails_every_caller_in_the_batch():
    batcher = MicroBatcher(Recorder(fail=ConnectionError("down")), max_batch=32, max_wait_ms=5)
    results = await asyncio.gather(*(batcher.submit(str(i)) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_lone_item_waits_no_longer_than_the_window():
    batcher = MicroBatcher(Recorder(), max_batch=32, max_wait_ms=5)
    assert await asyncio.wait_for(batcher.submit("x"), 0.5) == "x!None"


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch=0)
