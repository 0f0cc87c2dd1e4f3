"""Cache adapters (in-process, Redis), chosen by ``cache_url``, and the caches built on
them (embeddings, answers). A new cache is one module and one ``CACHES.register``."""

from __future__ import annotations

from collections.abc import Callable

from ragline.core.ports import Cache
from ragline.core.registry import Registry, scheme_of
from ragline.settings import Settings

StateCallback = Callable[[str], None]
CacheFactory = Callable[[Settings, "StateCallback | None"], Cache]
CACHES: Registry[CacheFactory] = Registry("cache", "cache_url")


SHARED_SCHEMES = ("redis", "rediss", "unix")  # caches that every replica sees (Redis)


def is_shared(settings: Settings) -> bool:
    """Whether the configured cache is shared by every replica (so state kept there, like
    rate-limit buckets, holds across them)."""
    return scheme_of(settings.cache_url, default=settings.cache_url) in SHARED_SCHEMES


def build_cache(settings: Settings, on_state_change: StateCallback | None = None) -> Cache | None:
    """The configured cache (``none``: no caching)."""
    if settings.cache_url == "none":
        return None
    return CACHES.factory(scheme_of(settings.cache_url, default=settings.cache_url))(settings, on_state_change)


def _memory(settings: Settings, on_state_change: StateCallback | None) -> Cache:
    from ragline.adapters.caches.memory import MemoryCache

    return MemoryCache(settings.memory_cache_max_entries, int(settings.memory_cache_max_mb * 1_000_000))


def _redis(settings: Settings, on_state_change: StateCallback | None) -> Cache:
    """Redis behind a circuit breaker: a dead Redis costs a miss, not an error."""
    from ragline.adapters.caches.redis import RedisCache
    from ragline.adapters.caches.resilient import ResilientCache

    redis = RedisCache(settings.cache_url, prefix=settings.cache_prefix, timeout_s=settings.cache_timeout_s)
    return ResilientCache(
        redis, failures_to_open=3, open_s=settings.cache_breaker_open_s, on_state_change=on_state_change
    )


CACHES.register("memory", _memory)
for _scheme in SHARED_SCHEMES:
    CACHES.register(_scheme, _redis)
