"""Token buckets by key (a client address, or address and route), in memory: the API's and the
push hub's rate limits. ``per_min`` tokens a minute, bursts up to ``per_min``; the least recently
used buckets are dropped first past ``MAX_CLIENTS``."""

from __future__ import annotations

import time
from collections import OrderedDict

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
