"""Bulkheads: each dependency and each kind of heavy work on its own bounded executor.

The event loop only routes. Parsing and chunking, embedding, Milvus calls and the
local LLM each get a ``Bulkhead``: a small thread pool of their own plus a bounded
queue in front of it. When the queue is full the caller is refused at once
(``Overloaded``: a 503 with Retry-After) instead of waiting behind work it cannot
overtake, and a slow Milvus fills only Milvus's pool, never the embedder's.

A bulkhead of ``processes`` runs its work in child processes instead of threads: for
pure-Python parsing (PDF, HTML, large JSON bodies), which holds the GIL and would slow
the event loop from any thread of this process. Arguments and results are pickled.

Background work (parsing, chunking and embedding documents) runs at a lower CPU
priority (``nice``): on a busy machine the OS serves searches and answers first.

A call can also carry a deadline: the caller stops waiting after it (the thread
finishes in the background; its slot stays taken until then, which is what keeps a
hung dependency from being handed ever more threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ragline.core.errors import DependencyTimeout, DependencyUnavailable, Overloaded

T = TypeVar("T")
_TASKS_PER_CHILD = 200  # a parser process is replaced after this many calls (bounded leaks)


class Bulkhead:
    def __init__(self, name: str, workers: int, queue: int, *, processes: bool = False, nice: int = 0) -> None:
        self.name = name
        self.nice = nice  # > 0: background work, scheduled after interactive work by the OS
        self.workers = workers
        self.capacity = workers + queue
        self.in_flight = 0  # running or waiting for a worker
        self.processes = processes
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        if self._pool is None:  # made on first use: a process pool costs a start-up
            if self.processes:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    max_tasks_per_child=_TASKS_PER_CHILD,
                    initializer=child_start,
                    initargs=(self.nice,),
                )
            else:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.workers,
                    thread_name_prefix=f"ragline-{self.name}",
                    initializer=_lower_priority,
                    initargs=(self.nice,),
                )
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any, deadline_s: float | None = None, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on this bulkhead's workers; Overloaded when it is full."""
        if self.in_flight >= self.capacity:
            raise Overloaded(self.name, self.capacity)
        if self.processes:
            call = functools.partial(fn, *args, **kwargs)
        else:
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        self.in_flight += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor(), call)
        except BaseException:
            self.in_flight -= 1
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline_s)
        except TimeoutError:
            raise DependencyTimeout(f"{self.name} did not answer within {deadline_s:g}s") from None
        except BrokenProcessPool as exc:
            self._pool = None  # a child died (out of memory, killed): the next call gets a new pool
            raise DependencyUnavailable(
                f"the {self.name} process died ({exc}); retry. A script that uses ragline must guard its entry "
                "point with `if __name__ == '__main__':` (child processes re-import it), or set "
                "RAGLINE_PARSE_IN_PROCESSES=false"
            ) from None

    def _release(self, future: asyncio.Future[Any]) -> None:
        self.in_flight -= 1
        if not future.cancelled():
            # retrieved: a call its caller gave up on at the deadline (a hung Milvus) ends
            # later with an error nobody awaits; asyncio would log it as never retrieved
            future.exception()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        children = list(getattr(pool, "_processes", {}).values()) if self.processes else []
        pool.shutdown(wait=False, cancel_futures=True)
        for child in children:  # a parse in progress is abandoned, not waited for (shutdown deadline)
            child.terminate()


def die_with_parent() -> None:
    """Linux: this child gets SIGKILL when its parent dies (a server killed with kill -9
    left its idle parse children behind, waiting on their queue for ever)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call: nobody to serve
            os._exit(0)


def child_start(nice: int) -> None:
    """A child process: dies with its parent, runs at the given priority."""
    die_with_parent()
    _lower_priority(nice)


def _lower_priority(nice: int) -> None:
    """Lower this thread's (or process's) CPU priority by ``nice`` (Linux: per thread)."""
    if nice > 0 and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
