"""A cache that never fails a request: errors are misses, and a circuit breaker
(``ragline.core.breaker``) stops paying the timeout on every call while the backend is down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ragline.core.breaker import CircuitBreaker
from ragline.core.errors import RaglineError

T = TypeVar("T")


class ResilientCache:
    def __init__(
        self,
        backend,
        failures_to_open: int = 3,
        open_s: float = 5.0,
        on_state_change: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.breaker = CircuitBreaker(f"cache {backend.name}", failures_to_open, open_s, on_state_change)
        self.errors = 0

    @property
    def state(self) -> str:
        return self.breaker.state

    async def get(self, key: str) -> bytes | None:
        return await self._guard(lambda: self.backend.get(key), None)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._guard(lambda: self.backend.set(key, value, ttl_s), None)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._guard(lambda: self.backend.get_many(keys), [None] * len(keys))

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        await self._guard(lambda: self.backend.set_many(items, ttl_s), None)

    async def delete(self, *keys: str) -> None:
        await self._guard(lambda: self.backend.delete(*keys), None)

    async def ping(self) -> None:
        await self.backend.ping()

    async def close(self) -> None:
        await self.backend.close()

    async def _guard(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if not self.breaker.allow():
            return fallback
        try:
            result = await call()
        except RaglineError as exc:
            self.errors += 1
            self.breaker.failure(exc)
            return fallback
        if self.breaker.failures or self.breaker.opened_at is not None:
            self.breaker.success()
        return result
