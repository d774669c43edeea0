"""Writes the worker's derived state to the Redis serving store, one pipeline per batch.

Redis is derived state: if it is down, the worker logs, counts and carries on (it never blocks
the stream on Redis); the state catches up with the next batches.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from instore import serving
from instore.records import NearbyCustomer, Offer

log = logging.getLogger(__name__)
FEED_KEEP = 200
OFFER_KEEP_S = 24 * 3600
POSITION_EVERY_MS = 1000


class ServingWriter:
    def __init__(self, redis_url: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.errors = 0
        self._last_error_log = 0.0
        self._last_pos: dict[str, int] = {}

    async def write_batch(
        self,
        positions: list[tuple[str, str, float, float, int]],
        nearby: list[NearbyCustomer],
        offers: list[Offer],
        totals: Counter[str],
        per_promo: Counter[tuple[str, str]] | None = None,
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for uid, store_id, lat, lon, ts in positions:
            if ts - self._last_pos.get(uid, 0) < POSITION_EVERY_MS:
                continue
            self._last_pos[uid] = ts
            pipe.zadd(serving.store_live(store_id), {uid: ts})
            pipe.hset(serving.store_positions(store_id), uid,
                      orjson.dumps({"latitude": lat, "longitude": lon, "ts": ts}))
        if len(self._last_pos) > 200_000:
            self._last_pos.clear()
        per_promo = Counter(per_promo or {})
        for row in nearby:
            per_promo[(row.pid, row.store_id)] += 1
        for (pid, store_id), n in per_promo.items():
            pipe.hincrby(serving.promo_stats(pid), "nearby", n)
            pipe.hincrby(serving.store_stats(store_id), "nearby", n)
        for offer in offers:
            data = offer.to_json()
            pipe.lpush(serving.offers_of(offer.uid), data)
            pipe.ltrim(serving.offers_of(offer.uid), 0, serving.LATEST_OFFERS_KEEP - 1)
            pipe.set(serving.offer(offer.offer_id), data, ex=OFFER_KEEP_S)
            pipe.lpush(serving.offers_feed(), data)
            pipe.hincrby(serving.promo_stats(offer.pid), "sent", 1)
            pipe.hincrby(serving.store_stats(offer.store_id), "sent", 1)
        if offers:
            pipe.ltrim(serving.offers_feed(), 0, FEED_KEEP - 1)
        for name, n in totals.items():
            if n:
                pipe.hincrby(serving.totals(), name, n)
        if not pipe:
            return
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self.errors += 1
            now = time.monotonic()
            if now - self._last_error_log > 10:
                self._last_error_log = now
                log.warning("serving store unavailable (%s); %d batches not written so far",
                            type(exc).__name__, self.errors)

    async def forget_shopper(self, uid: str) -> None:
        self._last_pos.pop(uid, None)

    async def close(self) -> None:
        await self.redis.aclose()
