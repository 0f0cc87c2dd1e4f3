"""Cache adapters (in-process, Redis), chosen by the cache URL (``cache_url``,
``settings.cache.url``), and the caches built on
them (embeddings, answers). A new cache is one module and one ``CACHES.register``."""

from __future__ import annotations

from collections.abc import Callable

from ragline.core.ports import Cache
from ragline.core.registry import Registry, scheme_of
from ragline.settings import CacheSettings

StateCallback = Callable[[str], None]
CacheFactory = Callable[[CacheSettings, "StateCallback | None"], Cache]
CACHES: Registry[CacheFactory] = Registry("cache", "cache_url")


SHARED_SCHEMES = ("redis", "rediss", "unix")  # caches that every replica sees (Redis)


def is_shared(config: CacheSettings) -> bool:
    """Whether the configured cache is shared by every replica (so state kept there, like
    rate-limit buckets, holds across them)."""
    return scheme_of(config.url, default=config.url) in SHARED_SCHEMES


def build_cache(config: CacheSettings, on_state_change: StateCallback | None = None) -> Cache | None:
    """The cache ``config.url`` names (``settings.cache``; ``none``: no caching)."""
    if config.url == "none":
        return None
    return CACHES.factory(scheme_of(config.url, default=config.url))(config, on_state_change)


def _memory(config: CacheSettings, on_state_change: StateCallback | None) -> Cache:
    from ragline.adapters.caches.memory import MemoryCache

    return MemoryCache(config.memory_max_entries, int(config.memory_max_mb * 1_000_000))


def _redis(config: CacheSettings, on_state_change: StateCallback | None) -> Cache:
    """Redis behind a circuit breaker: a dead Redis costs a miss, not an error."""
    from ragline.adapters.caches.redis import RedisCache
    from ragline.adapters.caches.resilient import ResilientCache

    redis = RedisCache(config.url, prefix=config.prefix, timeout_s=config.timeout_s)
    return ResilientCache(redis, failures_to_open=3, open_s=config.breaker_open_s, on_state_change=on_state_change)


CACHES.register("memory", _memory)
for _scheme in SHARED_SCHEMES:
    CACHES.register(_scheme, _redis)
