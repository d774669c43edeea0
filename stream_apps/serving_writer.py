"""Writes the worker's derived state to the Redis serving store, one pipeline per batch.

Redis is derived state: if it is down, the worker logs, counts and carries on (it never blocks
the stream on Redis); the state catches up with the next batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from instore import serving
from instore.records import Offer
from stream_apps.analytics import queue_sums
from stream_apps.bulk_writes import BulkWrites

log = logging.getLogger(__name__)
FEED_KEEP = 200
OFFER_KEEP_S = 24 * 3600
POSITION_EVERY_MS = 1000


class ServingWriter:
    """Coalesces what the agents derive and writes it in one pipeline at most every
    ``interval_s``: a pipeline per batch would pack hundreds of counter commands (one per
    promotion and product near the batch's shoppers) each time, which cost the worker more
    than the matching. ``flush()`` is also called by a timer, so nothing waits for traffic.
    Offers are the exception: they are written with their batch, because the phone gets an
    offer through the push sink within the second and the API looks it up here when the
    shopper opens or redeems it (coalesced, the lookup could come first and answer 404).

    The agent does not wait for Redis to apply a write: each pipeline runs while the agent
    works on the next batch, and the next write waits for it (in order, one in flight). Redis
    takes ~4 us per write in the bulk script, ~11 ms for a batch of 500 offers; awaited
    inline, that held every position behind it. :meth:`settle` waits for what was sent."""

    def __init__(self, redis_url: str, interval_s: float = 1.0) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.interval_s = interval_s
        self.errors = 0
        self._last_error_log = 0.0
        self.last_flush = time.monotonic()
        self._last_pos: dict[str, int] = {}
        self._positions: dict[str, tuple[str, float, float, int]] = {}
        self.pending_per_promo: Counter[tuple[str, str]] = Counter()
        self._totals: Counter[str] = Counter()
        self.pending_dwell: dict[tuple[int, str], float] = {}
        self._in_flight: asyncio.Future[None] | None = None

    async def write_batch(
        self,
        positions: list[tuple[str, str, float, float, int]],
        offers: list[Offer],
        totals: Counter[str],
    ) -> None:
        """Add a batch's live positions, offers and totals (its dwell goes through
        :meth:`add_dwell`, its NEARBY counts per promotion into ``pending_per_promo``)."""
        for uid, store_id, lat, lon, ts in positions:
            if ts - self._last_pos.get(uid, 0) < POSITION_EVERY_MS:
                continue
            self._last_pos[uid] = ts
            self._positions[uid] = (store_id, lat, lon, ts)
        if len(self._last_pos) > 200_000:
            self._last_pos.clear()
        self._totals.update(totals)
        if offers:
            # Offers are written at once (a few a second): the shopper can open one as soon as
            # the push reaches the phone, and the API looks it up here. The offered shoppers'
            # positions go with them, so "show me where" on a fresh offer knows where they
            # stand (the other positions wait for the next flush).
            writes = BulkWrites()
            _add_offers(writes, offers)
            for uid in {o.uid for o in offers}:
                pending = self._positions.get(uid)
                if pending is not None:
                    _add_position(writes, uid, *pending)
            pipe = self.redis.pipeline(transaction=False)
            writes.queue(pipe)
            await self._submit(pipe)
        if time.monotonic() - self.last_flush >= self.interval_s:
            await self.flush()

    def add_dwell(self, dwell: dict[tuple[int, str], float]) -> None:
        """Add a batch's dwell seconds per (bucket, ``store:sku``) (written with the next
        flush). NEARBY counts per (pid, store_id) the processors add to
        ``pending_per_promo`` themselves."""
        sums = self.pending_dwell
        for member, seconds in dwell.items():
            sums[member] = sums.get(member, 0.0) + seconds

    def count(self, name: str, n: int = 1) -> None:
        """Add to a global total (written with the next flush)."""
        self._totals[name] += n

    async def flush(self) -> None:
        self.last_flush = time.monotonic()
        positions, self._positions = self._positions, {}
        # the same counter stays (the processors count into it), emptied
        per_promo = self.pending_per_promo.copy()
        self.pending_per_promo.clear()
        totals, self._totals = self._totals, Counter()
        dwell, self.pending_dwell = self.pending_dwell, {}
        writes = BulkWrites()
        for uid, (store_id, lat, lon, ts) in positions.items():
            _add_position(writes, uid, store_id, lat, lon, ts)
        per_store: Counter[str] = Counter()
        for (pid, store_id), n in per_promo.items():
            writes.add("HINCRBY", serving.promo_stats(pid), "nearby", n)
            per_store[store_id] += n
        for store_id, n in per_store.items():
            writes.add("HINCRBY", serving.store_stats(store_id), "nearby", n)
        for name, n in totals.items():
            if n:
                writes.add("HINCRBY", serving.totals(), name, n)
        pipe = self.redis.pipeline(transaction=False)
        writes.queue(pipe)
        if dwell:
            queue_sums(pipe, dwell, serving.analytics_dwell)
        if pipe:
            await self._submit(pipe)

    async def _submit(self, pipe: Any) -> None:
        """Run ``pipe`` after the one before it, without waiting for it to finish."""
        await self.settle()
        self._in_flight = asyncio.ensure_future(self._execute(pipe))

    async def settle(self) -> None:
        """Wait until every write sent so far is applied (or has failed and been counted)."""
        if self._in_flight is not None:
            await self._in_flight
            self._in_flight = None

    async def _execute(self, pipe: Any) -> None:
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
        self._positions.pop(uid, None)

    async def close(self) -> None:
        await self.settle()
        await self.redis.aclose()


def _add_offers(writes: BulkWrites, offers: list[Offer]) -> None:
    for offer in offers:
        data = offer.to_json()
        writes.add("LPUSH", serving.offers_of(offer.uid), data)
        writes.add("LTRIM", serving.offers_of(offer.uid), 0, serving.LATEST_OFFERS_KEEP - 1)
        writes.add("SET", serving.offer(offer.offer_id), data, "EX", OFFER_KEEP_S)
        writes.add("LPUSH", serving.offers_feed(), data)
        writes.add("HINCRBY", serving.promo_stats(offer.pid), "sent", 1)
        writes.add("HINCRBY", serving.store_stats(offer.store_id), "sent", 1)
    if offers:
        writes.add("LTRIM", serving.offers_feed(), 0, FEED_KEEP - 1)


def _add_position(writes: BulkWrites, uid: str, store_id: str, lat: float, lon: float,
                  ts: int) -> None:
    """A shopper's last position on the live floor map (and in the store's live set)."""
    writes.add("ZADD", serving.store_live(store_id), ts, uid)
    writes.add("HSET", serving.store_positions(store_id), uid,
               orjson.dumps({"latitude": lat, "longitude": lon, "ts": ts}))
