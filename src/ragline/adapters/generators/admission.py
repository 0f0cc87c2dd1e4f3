"""How many requests the LLM server gets at once: an adaptive (AIMD) limit.

A fixed concurrency is wrong for every server but one: vLLM on a GPU serves 64 prompts
at once in about the time of one, llama.cpp on one CPU thread serves them one after
another, so 4 concurrent askers wait 4x as long and every answer drifts to the timeout.
The limit therefore follows the server's latency, as TCP follows a network's: each
request that starts answering within its target raises the limit (by one while the
limit is growing from its start, by 1/limit afterwards: about one per round of
requests), one that is late halves it (once per round, so a burst of late answers
counts once). A caller that cannot get a slot within ``queue_timeout_s`` gets
:class:`LLMBusy` at once, and its question an extractive answer, instead of queueing
behind the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from ragline.core.errors import DependencyUnavailable


class LLMBusy(DependencyUnavailable):
    """No request slot within the queue timeout: the LLM is alive but saturated."""


class AdaptiveLimit:
    def __init__(
        self,
        maximum: int,
        *,
        initial: int = 1,
        minimum: int = 1,
        queue_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.initial = float(max(self.minimum, min(initial, maximum)))
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0
        self.restart()
        self._clock = clock
        self._changed = asyncio.Condition()
        self._wakers: set[asyncio.Task[None]] = set()

    def restart(self) -> None:
        """Back to the initial limit and slow start (a server that was unreachable comes back cold)."""
        self.limit = self.initial
        self._growing = True  # slow start: +1 per fast request (doubling per round) until a late one
        self._last_decrease = float("-inf")

    @property
    def slots(self) -> int:
        return max(self.minimum, int(self.limit))

    @contextlib.asynccontextmanager
    async def slot(self, weight: int = 1) -> AsyncIterator[None]:
        """Hold ``weight`` slots (prompts of one batched request); LLMBusy when they do
        not free within the queue timeout. A request heavier than the limit runs alone."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.in_flight == 0 or self.in_flight + weight <= self.slots),
                    self.queue_timeout_s,
                )
            except TimeoutError:
                raise LLMBusy(
                    f"LLM busy: {self.in_flight} prompts in flight (its adaptive limit), "
                    f"none finished within {self.queue_timeout_s:g} s"
                ) from None
            self.in_flight += weight
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= weight
                self._changed.notify_all()

    def observe(self, latency_s: float, target_s: float) -> None:
        """One request's latency against its target: grow the limit, or halve it."""
        now = self._clock()
        if latency_s <= target_s:
            step = 1.0 if self._growing else 1.0 / self.limit
            self.limit = min(float(self.maximum), self.limit + step)
            self._wake()
        elif now - self._last_decrease >= latency_s:  # once per round of requests
            self._growing = False
            self._last_decrease = now
            self.limit = max(float(self.minimum), self.limit / 2)

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop: nobody can be waiting
            task = asyncio.get_running_loop().create_task(notify())
            self._wakers.add(task)
            task.add_done_callback(self._wakers.discard)
