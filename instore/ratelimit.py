"""Rate limits by key (a client address, or address and route).

- ``RateLimiter``: token buckets in memory, for one process (the local push hub): ``per_min``
  tokens a minute, bursts up to ``per_min``; the least recently used buckets are dropped first
  past ``MAX_CLIENTS``.
- ``SharedRateLimiter``: at most ``per_min`` in any moving 60 s window, counted in Redis with
  the ``limits`` library, so every API process behind a load balancer spends one budget. Redis
  unreachable: the request is let through (logged), the API keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from instore import serving

log = logging.getLogger(__name__)

MAX_CLIENTS = 100_000  # buckets kept (least recently used dropped first)


class TokenBucket:
    __slots__ = ("level", "updated")

    def __init__(self, capacity: float, now: float) -> None:
        self.level = capacity
        self.updated = now


class RateLimiter:
    """Token buckets by key: ``per_min`` tokens a minute, bursts up to ``per_min``."""

    def __init__(self, per_min: int, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.capacity = float(per_min)
        self.rate = per_min / 60.0
        self.clock = clock
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, key: str) -> TokenBucket:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.capacity, now)
            self.buckets[key] = bucket
            if len(self.buckets) > MAX_CLIENTS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
            bucket.level = min(self.capacity, bucket.level + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Take ``cost`` from the bucket; False when there is not that much left."""
        bucket = self._bucket(key)
        if bucket.level >= cost:
            bucket.level -= cost
            return True
        return False

    def exhausted(self, key: str) -> bool:
        return self._bucket(key).level < 1.0

    def retry_after_s(self, key: str) -> int:
        bucket = self._bucket(key)
        return max(1, int((1.0 - bucket.level) / self.rate) + 1)


class SharedRateLimiter:
    """At most ``per_min`` hits per key in any moving minute, counted in Redis (``limits``'
    moving window) under ``serving.RATE_LIMITS_PREFIX``; ``name`` keeps limiters apart."""

    def __init__(self, redis_url: str, per_min: int, name: str) -> None:
        self.item = RateLimitItemPerMinute(per_min)
        self.name = name
        self.storage = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix=serving.RATE_LIMITS_PREFIX,
            wrap_exceptions=True,
        )
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._warned = 0.0

    def _unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("rate limit %s: Redis unreachable (%s), letting requests through",
                        self.name, type(exc).__name__)

    async def allow(self, key: str) -> bool:
        """Count a hit; False when the key's budget for the last minute is spent."""
        try:
            return bool(await self.limiter.hit(self.item, self.name, key))
        except Exception as exc:  # noqa: BLE001 - any storage failure: fail open, logged
            self._unavailable(exc)
            return True

    async def exhausted(self, key: str) -> bool:
        try:
            return not await self.limiter.test(self.item, self.name, key)
        except Exception as exc:  # noqa: BLE001
            self._unavailable(exc)
            return False

    async def retry_after_s(self, key: str) -> int:
        try:
            stats: Any = await self.limiter.get_window_stats(self.item, self.name, key)
        except Exception as exc:  # noqa: BLE001
            self._unavailable(exc)
            return 1
        return max(1, int(stats.reset_time - time.time()) + 1)
