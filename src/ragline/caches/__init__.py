"""Cache adapters (in-process, Redis) and the caches built on them (embeddings, answers)."""

from __future__ import annotations

from ..settings import Settings


def build_cache(settings: Settings, on_state_change=None):
    """The configured cache: in-process, or Redis behind a circuit breaker."""
    if settings.cache_url == "none":
        return None
    if settings.cache_url == "memory":
        from .memory import MemoryCache

        return MemoryCache(settings.memory_cache_max_entries, int(settings.memory_cache_max_mb * 1_000_000))
    from .redis import RedisCache
    from .resilient import ResilientCache

    redis = RedisCache(settings.cache_url, prefix=settings.cache_prefix, timeout_s=settings.cache_timeout_s)
    return ResilientCache(redis, failures_to_open=3, open_s=settings.cache_breaker_open_s,
                          on_state_change=on_state_change)
