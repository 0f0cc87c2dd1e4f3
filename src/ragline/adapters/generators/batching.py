"""Micro-batching: concurrent requests gathered into one call.

Callers ``submit`` one item and await its result. Items that share parameters are
gathered until ``max_batch`` of them wait or ``max_wait_ms`` passed since the first,
then sent together through ``send`` (one HTTP request for vLLM's /v1/completions),
and each result is routed back to its caller. A failed call fails every caller in
that batch with the same error; a result that is an exception fails its caller only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from ragline.core.coalescing import settle

In = TypeVar("In")
Out = TypeVar("Out")
Send = Callable[[list[In], Hashable], Awaitable[list[Out]]]


class MicroBatcher(Generic[In, Out]):
    def __init__(self, send: Send, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._send = send
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._pending: dict[Hashable, list[tuple[In, asyncio.Future[Out]]]] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._inflight: set[asyncio.Task] = set()
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # the latest sizes sent, for tests
        self.on_batch: Callable[[int], None] | None = None  # e.g. a histogram's observe

    async def submit(self, item: In, params: Hashable = None) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        queue = self._pending.setdefault(params, [])
        queue.append((item, future))
        if len(queue) >= self.max_batch:
            self._flush(params)
        elif len(queue) == 1:
            self._timers[params] = loop.call_later(self.max_wait_s, self._flush, params)
        return await future

    def _flush(self, params: Hashable) -> None:
        timer = self._timers.pop(params, None)
        if timer is not None:
            timer.cancel()
        batch = [(item, fut) for item, fut in self._pending.pop(params, []) if not fut.done()]
        if batch:
            task = asyncio.ensure_future(self._run(batch, params))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]], params: Hashable) -> None:
        self.batch_sizes.append(len(batch))
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = await self._send([item for item, _ in batch], params)
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} got {len(results)} results")
        except BaseException as exc:  # every caller must hear about it, whatever it is
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        settle([future for _, future in batch], results)
