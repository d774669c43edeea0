"""Rate limits by key (a client address, or address and route).

Both are the ``limits`` library's moving window: at most ``per_min`` hits in any 60 s.

- ``RateLimiter``: counted in memory, for one process (the local push hub).
- ``SharedRateLimiter``: counted in Redis, so every API process behind a load balancer spends
  one budget. Redis unreachable: the request is let through (logged), the API keeps serving.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as SyncMovingWindow

from instore import serving

log = logging.getLogger(__name__)

class RateLimiter:
    """At most ``per_min`` hits per key in any moving minute, counted in this process's memory
    (``limits``' moving window; its storage drops a key once its window is over)."""

    def __init__(self, per_min: int) -> None:
        self.item = RateLimitItemPerMinute(per_min)
        self.limiter = SyncMovingWindow(MemoryStorage())

    def allow(self, key: str, cost: int = 1) -> bool:
        """Count ``cost`` hits; False (and nothing counted) when the budget left is smaller."""
        return bool(self.limiter.hit(self.item, key, cost=cost))

    def exhausted(self, key: str) -> bool:
        return not self.limiter.test(self.item, key)

    def retry_after_s(self, key: str) -> int:
        stats = self.limiter.get_window_stats(self.item, key)
        return max(1, int(stats.reset_time - time.time()) + 1)


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
