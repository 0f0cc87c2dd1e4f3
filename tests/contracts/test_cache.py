"""The Cache contract, run against the in-process cache and a real redis-server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ragline.adapters.caches.memory import MemoryCache
from ragline.adapters.caches.redis import RedisCache


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def cache(request):
    if request.param == "memory":
        backend = MemoryCache()
    else:
        backend = RedisCache(request.getfixturevalue("running_redis").url, prefix=f"t{uuid.uuid4().hex[:6]}:")
    yield backend
    await backend.close()


async def test_a_missing_key_is_none(cache):
    assert await cache.get("nope") is None


async def test_what_is_set_is_got_back_byte_for_byte(cache):
    value = bytes(range(256)) * 10
    await cache.set("k", value, ttl_s=60)
    assert await cache.get("k") == value


async def test_setting_again_replaces_the_value(cache):
    await cache.set("k", b"one", 60)
    await cache.set("k", b"two", 60)
    assert await cache.get("k") == b"two"


async def test_entries_expire_after_their_ttl(cache):
    await cache.set("short", b"x", ttl_s=0.2)
    await cache.set("long", b"y", ttl_s=60)
    await asyncio.sleep(0.35)
    assert await cache.get("short") is None and await cache.get("long") == b"y"


async def test_delete_removes_several_keys_and_ignores_missing_ones(cache):
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    await cache.delete("a", "b", "never-set")
    assert await cache.get("a") is None and await cache.get("b") is None


async def test_many_keys_are_set_and_got_in_one_call_in_order(cache):
    await cache.set_many([("m1", b"one"), ("m3", b"three")], 60)
    assert await cache.get_many(["m1", "m2", "m3"]) == [b"one", None, b"three"]
    assert await cache.get_many([]) == []


async def test_ping_answers_while_the_backend_is_up(cache):
    await cache.ping()


async def test_the_memory_cache_is_bounded_by_entries_and_bytes():
    cache = MemoryCache(max_entries=3, max_bytes=1000)
    for i in range(5):
        await cache.set(f"k{i}", b"x", 60)
    assert len(cache) == 3 and await cache.get("k0") is None and await cache.get("k4") == b"x"
    await cache.get("k2")  # recently used: survives the next eviction
    await cache.set("big", b"y" * 900, 60)
    assert await cache.get("k2") is None or await cache.get("k3") is None
    assert await cache.get("big") == b"y" * 900 and cache._bytes <= 1000
