"""The Redis cache: redis.asyncio with a connection pool, a key prefix and short timeouts.

Vendor errors are mapped to ragline's tree here; ``ResilientCache`` decides what a
failure means for the caller (a miss, not an error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import cast

from ragline.core.errors import DependencyTimeout, DependencyUnavailable


@contextlib.contextmanager
def _translated(url: str) -> Iterator[None]:
    import redis.exceptions as rex

    try:
        yield
    except rex.TimeoutError as exc:
        raise DependencyTimeout(f"Redis at {url} timed out") from exc
    except (rex.RedisError, OSError) as exc:
        raise DependencyUnavailable(f"Redis at {url} is unavailable: {exc}") from exc


class RedisCache:
    name = "redis"

    def __init__(self, url: str, prefix: str = "ragline:", timeout_s: float = 0.25, max_connections: int = 64) -> None:
        import redis.asyncio as aioredis

        self.url = url.split("@")[-1]  # never log credentials
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=max_connections,
            retry_on_timeout=False,
            health_check_interval=30,
        )

    async def get(self, key: str) -> bytes | None:
        with _translated(self.url):
            return cast("bytes | None", await self.client.get(self.prefix + key))

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        with _translated(self.url):
            await self.client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with _translated(self.url):
            return cast("list[bytes | None]", await self.client.mget([self.prefix + k for k in keys]))

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None:
        if not items:
            return
        with _translated(self.url):
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))
                await pipe.execute()

    async def delete(self, *keys: str) -> None:
        if keys:
            with _translated(self.url):
                await self.client.delete(*(self.prefix + k for k in keys))

    async def ping(self) -> None:
        with _translated(self.url):
            await self.client.ping()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
