"""A cache that never fails a request: errors are misses, and a circuit breaker stops
paying the timeout on every call while the backend is down.

After ``failures_to_open`` consecutive failures the breaker opens: calls skip the
backend for ``open_s`` seconds. Then one call is let through (half-open); success
closes the breaker, failure opens it again. State changes are logged and reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import RaglineError

log = logging.getLogger("ragline.cache")
T = TypeVar("T")


class ResilientCache:
    def __init__(self, backend, failures_to_open: int = 3, open_s: float = 5.0,
                 on_state_change: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.name = backend.name
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.on_state_change = on_state_change
        self.failures = 0
        self.opened_at: float | None = None
        self.errors = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.open_s else "half-open"

    async def get(self, key: str) -> bytes | None:
        return await self._guard(lambda: self.backend.get(key), None)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._guard(lambda: self.backend.set(key, value, ttl_s), None)

    async def delete(self, *keys: str) -> None:
        await self._guard(lambda: self.backend.delete(*keys), None)

    async def ping(self) -> None:
        await self.backend.ping()

    async def close(self) -> None:
        await self.backend.close()

    async def _guard(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if self.state == "open":
            return fallback
        try:
            result = await call()
        except RaglineError as exc:
            self._failed(exc)
            return fallback
        if self.opened_at is not None or self.failures:
            self._recovered()
        return result

    def _failed(self, exc: RaglineError) -> None:
        self.errors += 1
        self.failures += 1
        if self.failures >= self.failures_to_open and self.state != "open":
            self.opened_at = time.monotonic()
            log.warning("cache %s unavailable (%s); serving without it for %.0fs", self.name, exc, self.open_s)
            self._report("open")

    def _recovered(self) -> None:
        was_open = self.opened_at is not None
        self.failures, self.opened_at = 0, None
        if was_open:
            log.warning("cache %s is back", self.name)
            self._report("closed")

    def _report(self, state: str) -> None:
        if self.on_state_change is not None:
            self.on_state_change(state)
