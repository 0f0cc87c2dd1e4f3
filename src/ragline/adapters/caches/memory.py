"""The in-process cache: TTL + LRU, bounded by entry count and by bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from ragline.settings import default


class MemoryCache:
    name = "memory"

    def __init__(
        self,
        max_entries: int = default("memory_cache_max_entries"),
        max_bytes: int = int(default("memory_cache_max_mb") * 1_000_000),
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        self._drop(key)
        self._data[key] = (value, time.monotonic() + ttl_s)
        self._bytes += len(value)
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._data)))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        for key, value in items:
            await self.set(key, value, ttl_s)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._drop(key)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._bytes -= len(item[0])

    def __len__(self) -> int:
        return len(self._data)
