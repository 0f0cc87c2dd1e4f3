"""Parsing uploads for many tenants: fair, bounded in time and memory.

``ParseLanes`` runs parse calls (one file each) in child processes, one slot per child:

- **Fair**: calls wait in one queue per tenant and are started round-robin across the
  tenants waiting, and one tenant holds at most ``workers - 1`` slots (with two or more),
  so a slot is always free for another tenant and a heavy upload never makes another
  tenant's small one wait behind a queue of its files.
- **A deadline per file**: a call past ``deadline_s`` is that file's error
  (``ParseDeadline``); its child is killed (the only way to stop a parser stuck in C or
  in a loop) and the slot gets a new child on its next call.
- **Bounded memory**: each child's address space is capped (``memory_mb``), so a file
  that expands past it fails with MemoryError in the child (that file's error) instead
  of growing the service.
- **Bounded queue**: past ``queue`` waiting calls a new one is refused (``Overloaded``:
  503 + Retry-After), as the bulkheads do.

With ``processes=False`` the slots are threads (no kill: the deadline only stops the
wait), for scripts that cannot spawn children.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ragline.core.bulkhead import child_start
from ragline.core.errors import DependencyUnavailable, Overloaded, RaglineError

T = TypeVar("T")


class ParseDeadline(RaglineError):
    """A file took longer than the parse deadline; its parser was stopped."""


@dataclass
class _Slot:
    number: int
    executor: Executor | None = None


@dataclass
class _Waiter:
    tenant: str
    ready: asyncio.Future[_Slot] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ParseLanes:
    def __init__(
        self,
        workers: int,
        queue: int,
        deadline_s: float,
        *,
        memory_mb: int = 0,
        nice: int = 0,
        processes: bool = True,
    ) -> None:
        self.workers = workers
        self.queue = queue
        self.deadline_s = deadline_s
        self.memory_mb = memory_mb
        self.nice = nice
        self.processes = processes
        self._slots = [_Slot(n) for n in range(workers)]
        self._free = list(self._slots)
        self._held: dict[str, int] = {}  # slots in use per tenant
        self._waiting: dict[str, deque[_Waiter]] = {}
        self._turns: deque[str] = deque()  # tenants with waiting calls, in round-robin order
        self.killed = 0  # children stopped at their deadline (for tests and metrics)

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def run(self, tenant: str, fn: Callable[..., T], *args: Any, deadline_s: float | None = None) -> T:
        """``fn(*args)`` in a child, in ``tenant``'s turn; ParseDeadline past the deadline."""
        slot = await self._acquire(tenant)
        try:
            return await self._call(slot, fn, args, deadline_s or self.deadline_s)
        finally:
            self._release(tenant, slot)

    async def _acquire(self, tenant: str) -> _Slot:
        if self._free and self._may_take(tenant) and not self._turns:
            return self._take(tenant)
        if self.waiting >= self.queue:
            raise Overloaded("parser", self.workers + self.queue)
        waiter = _Waiter(tenant)
        if tenant not in self._waiting:
            self._waiting[tenant] = deque()
            self._turns.append(tenant)
        self._waiting[tenant].append(waiter)
        self._dispatch()
        try:
            return await waiter.ready
        except asyncio.CancelledError:
            if waiter.ready.done() and not waiter.ready.cancelled():
                self._release(tenant, waiter.ready.result())  # given a slot just as it was cancelled
            else:
                self._forget(waiter)
            raise

    def _may_take(self, tenant: str) -> bool:
        """A tenant holds at most ``workers - 1`` slots: one is always left for the others."""
        return self._held.get(tenant, 0) < max(1, self.workers - 1)

    def _take(self, tenant: str) -> _Slot:
        self._held[tenant] = self._held.get(tenant, 0) + 1
        return self._free.pop()

    def _dispatch(self) -> None:
        """Hand free slots to waiting tenants, one call per tenant per round."""
        for _ in range(len(self._turns)):
            if not self._free:
                return
            tenant = self._turns[0]
            self._turns.rotate(-1)
            if not self._may_take(tenant):
                continue
            waiter = self._waiting[tenant].popleft()
            if not self._waiting[tenant]:
                del self._waiting[tenant]
                self._turns.remove(tenant)
            waiter.ready.set_result(self._take(tenant))

    def _release(self, tenant: str, slot: _Slot) -> None:
        self._held[tenant] -= 1
        if not self._held[tenant]:
            del self._held[tenant]
        self._free.append(slot)
        self._dispatch()

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._waiting.get(waiter.tenant)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[waiter.tenant]
                self._turns.remove(waiter.tenant)

    async def _call(self, slot: _Slot, fn: Callable[..., T], args: tuple[Any, ...], deadline_s: float) -> T:
        if slot.executor is None:
            slot.executor = self._executor(slot.number)
        future = asyncio.get_running_loop().run_in_executor(slot.executor, functools.partial(fn, *args))
        try:
            return await asyncio.wait_for(future, deadline_s)
        except TimeoutError:
            self._stop(slot)
            raise ParseDeadline(f"parsing took longer than {deadline_s:g}s; stopped") from None
        except BrokenProcessPool as exc:
            slot.executor = None  # the child died (its memory cap, a signal): a new one next time
            raise DependencyUnavailable(f"the parser process died ({exc})") from None

    def _executor(self, number: int) -> Executor:
        if not self.processes:
            return ThreadPoolExecutor(1, thread_name_prefix=f"ragline-parse-{number}")
        return ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            max_tasks_per_child=200,  # bounded leaks
            initializer=_child_limits,
            initargs=(self.nice, self.memory_mb),
        )

    def _stop(self, slot: _Slot) -> None:
        executor, slot.executor = slot.executor, None
        if executor is None:
            return
        if isinstance(executor, ProcessPoolExecutor):
            for child in list(getattr(executor, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    child.kill()
            self.killed += 1
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        for slot in self._slots:
            self._stop(slot)


def _child_limits(nice: int, memory_mb: int) -> None:
    """A parse child: as a bulkhead's child, and at most ``memory_mb`` of address space."""
    child_start(nice)
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
