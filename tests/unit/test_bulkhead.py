"""Bulkheads: bounded, refusing at once when full, and never waiting past a deadline."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ragline.core.bulkhead import Bulkhead
from ragline.core.errors import DependencyTimeout, Overloaded


async def test_a_full_bulkhead_refuses_at_once_and_frees_its_slot_when_work_ends():
    release = threading.Event()
    bulkhead = Bulkhead("slow", workers=1, queue=1)
    running = [asyncio.ensure_future(bulkhead.run(release.wait)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="slow queue is full"):
        await bulkhead.run(lambda: None)
    release.set()
    await asyncio.gather(*running)
    assert await bulkhead.run(lambda: 42) == 42
    bulkhead.close()


async def test_a_call_past_its_deadline_fails_with_a_timeout_while_the_slot_stays_taken():
    release = threading.Event()
    bulkhead = Bulkhead("milvus", workers=1, queue=0)
    with pytest.raises(DependencyTimeout, match="milvus did not answer within 0.05s"):
        await bulkhead.run(release.wait, deadline_s=0.05)
    with pytest.raises(Overloaded):  # the hung call still holds the only thread
        await bulkhead.run(lambda: None)
    release.set()
    bulkhead.close()


async def test_one_bulkhead_full_does_not_stop_another():
    release = threading.Event()
    store, embedder = Bulkhead("store", 1, 0), Bulkhead("embedder", 1, 0)
    hung = asyncio.ensure_future(store.run(release.wait))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(embedder.run(lambda: "vectors"), 1) == "vectors"
    release.set()
    await hung
    store.close(), embedder.close()


async def test_a_process_bulkhead_runs_work_apart_and_returns_its_result_or_error():
    import os

    from ragline.core.errors import DocumentError
    from ragline.ingest.loaders import load_file

    bulkhead = Bulkhead("parser", workers=1, queue=1, processes=True)
    try:
        assert await bulkhead.run(os.getpid) != os.getpid()
        with pytest.raises(DocumentError, match="No such file"):
            await bulkhead.run(load_file, __import__("pathlib").Path("/nonexistent/x.txt"), "t", 1000, "x")
    finally:
        bulkhead.close()


async def test_closing_a_process_bulkhead_ends_its_children():
    import os

    bulkhead = Bulkhead("parser", workers=1, queue=0, processes=True)
    child = await bulkhead.run(os.getpid)
    bulkhead.close()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return _zombie(child)

    deadline = asyncio.get_running_loop().time() + 5
    while not gone():
        assert asyncio.get_running_loop().time() < deadline, "the parser process outlived close()"
        await asyncio.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the kill(0) and the read (ESRCH: seen once in CI)
        return True


async def test_a_call_abandoned_at_its_deadline_that_fails_later_logs_nothing_unretrieved(caplog):
    import gc
    import time

    release = threading.Event()

    def hung_then_failing() -> None:
        release.wait()
        raise ConnectionError("Milvus answered at last, with an error")

    bulkhead = Bulkhead("milvus", workers=1, queue=0)
    with pytest.raises(DependencyTimeout):
        await bulkhead.run(hung_then_failing, deadline_s=0.05)
    release.set()
    deadline = time.monotonic() + 5
    while bulkhead.in_flight and time.monotonic() < deadline:  # the abandoned call ends
        await asyncio.sleep(0.01)
    assert bulkhead.in_flight == 0
    gc.collect()
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    bulkhead.close()
