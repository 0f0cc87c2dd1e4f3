"""Per-caller token buckets: ``rate`` requests a second on average, bursts up to ``burst``."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """In-process; bounded to ``max_callers`` buckets (the least recently seen go first)."""

    def __init__(self, rate: float, burst: int, max_callers: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    async def acquire(self, caller: str) -> float:
        return self.acquire_now(caller)

    def acquire_now(self, caller: str) -> float:
        """0 if the request may go now, else the seconds until it may (for Retry-After)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.pop(caller, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


# One atomic token-bucket step in Redis: KEYS[1] the bucket; ARGV rate, burst, now (s).
_BUCKET_LUA = """
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(b[1]) or burst
local updated = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """The same buckets in Redis, so limits hold across API replicas.

    If Redis fails, the replica falls back to its own in-process buckets rather than
    refusing or admitting everyone.
    """

    def __init__(self, url: str, rate: float, burst: int, prefix: str = "ragline:", timeout_s: float = 0.25) -> None:
        import redis.asyncio as aioredis

        self.rate = rate
        self.burst = burst
        self.prefix = prefix + "rl:"
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.script = self.client.register_script(_BUCKET_LUA)
        self.fallback = RateLimiter(rate, burst)

    async def acquire(self, caller: str) -> float:
        if self.rate <= 0:
            return 0.0
        try:
            wait = await self.script(keys=[self.prefix + caller], args=[self.rate, self.burst, time.time()])
            return float(wait)
        except Exception:  # any Redis trouble: limit locally instead
            return self.fallback.acquire_now(caller)
