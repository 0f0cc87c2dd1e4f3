"""Bulkheads: each dependency and each kind of heavy work on its own bounded executor.

The event loop only routes. Parsing and chunking, embedding, Milvus calls and the
local LLM each get a ``Bulkhead``: a small thread pool of their own plus a bounded
queue in front of it. When the queue is full the caller is refused at once
(``Overloaded``: a 503 with Retry-After) instead of waiting behind work it cannot
overtake, and a slow Milvus fills only Milvus's pool, never the embedder's.

A call can also carry a deadline: the caller stops waiting after it (the thread
finishes in the background; its slot stays taken until then, which is what keeps a
hung dependency from being handed ever more threads).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import DependencyTimeout, Overloaded

T = TypeVar("T")


class Bulkhead:
    def __init__(self, name: str, workers: int, queue: int) -> None:
        self.name = name
        self.workers = workers
        self.capacity = workers + queue
        self.in_flight = 0  # running or waiting for a thread
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ragline-{name}")

    async def run(self, fn: Callable[..., T], *args: Any, deadline_s: float | None = None, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on this bulkhead's threads; Overloaded when it is full."""
        if self.in_flight >= self.capacity:
            raise Overloaded(self.name, self.capacity)
        self.in_flight += 1
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(self._pool, call)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline_s)
        except TimeoutError:
            raise DependencyTimeout(f"{self.name} did not answer within {deadline_s:g}s") from None

    def _release(self, _future: asyncio.Future) -> None:
        self.in_flight -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
