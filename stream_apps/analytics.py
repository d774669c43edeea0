"""Analytics agents ("top items"): dwell seconds and redemptions per product, in minute buckets
in Redis, so the API can rank the top 10 % over any sliding window up to a day.

- dwell: from ``NEARBY_CUSTOMERS``: while a shopper keeps reporting near a promoted product, the
  time between consecutive rows (at most ``dwell_gap_s`` apart) is dwell time for that product
  (``store_id:sku``). A product near several promotions is counted once per shopper.
- redemptions: from ``offer_events`` with event ``redeemed``, the offer's product (looked up in
  the serving store), counted once per offer even when the event is redelivered.

Registered by ``stream_apps.app.create_app`` through ``agents(app, settings)``. The counting is
pure (``DwellTracker``, ``bucket_of``) and tested without a broker.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson

from instore import serving
from instore import topics as t
from instore.records import NearbyCustomer, OfferEvent, RecordError, decode
from instore.settings import Settings
from stream_apps.bulk_writes import BulkWrites

log = logging.getLogger(__name__)
BUCKET_TTL_S = 25 * 3600
COUNTED_MARK = "analytics-redeemed"


def bucket_of(ts_ms: int) -> int:
    return ts_ms // 1000 // serving.ANALYTICS_BUCKET_S


class DwellTracker:
    """Dwell seconds per (bucket, ``store_id:sku``) from NEARBY rows. Pure.

    Last-seen times are kept per (shopper, store), then per SKU, so the hot path does one
    lookup per position and an int-keyed lookup per product near it."""

    def __init__(self, gap_s: float, max_entries: int = 200_000) -> None:
        self.gap_ms = int(gap_s * 1000)
        self.max_entries = max_entries
        self._last: dict[tuple[str, str], dict[int, int]] = {}
        self._members: dict[str, dict[int, str]] = {}

    def add(self, uid: str, store_id: str, sku: int, ts: int,
            out: MutableMapping[tuple[int, str], float]) -> None:
        """Add this row's dwell to ``out`` (a Counter or ``defaultdict(float)``)."""
        self.add_position(uid, store_id, (sku,), ts, out)

    def add_position(self, uid: str, store_id: str, skus: Iterable[int], ts: int,
                     out: MutableMapping[tuple[int, str], float]) -> None:
        """``add`` for every product near one position (the worker's hot path). The same
        moment seen through several promotions of a product, or a replay, counts once."""
        seen = self._last.get((uid, store_id))
        if seen is None:
            seen = self._last[(uid, store_id)] = {}
        gap_ms = self.gap_ms
        members = None
        bucket = 0
        for sku in skus:
            last = seen.get(sku)
            if last is not None and ts <= last:
                continue
            seen[sku] = ts
            if last is not None and ts - last <= gap_ms:
                if members is None:
                    members = self._members.get(store_id)
                    if members is None:
                        members = self._members[store_id] = {}
                    bucket = bucket_of(ts)
                member = members.get(sku)
                if member is None:
                    member = members[sku] = f"{store_id}:{sku}"
                k = (bucket, member)
                out[k] = out.get(k, 0.0) + (ts - last) / 1000.0

    def prune(self, now_ts: int) -> None:
        """Forget shoppers not seen within the gap once there are too many."""
        if len(self._last) <= self.max_entries // 10:
            return
        gap_ms = self.gap_ms
        self._last = {k: v for k, v in self._last.items()
                      if any(now_ts - t <= gap_ms for t in v.values())}
        if len(self._last) > self.max_entries // 10:
            self._last.clear()
        if sum(len(m) for m in self._members.values()) > self.max_entries:
            self._members.clear()


def queue_sums(pipe: Any, sums: MutableMapping[tuple[int, str], float], key_of: Any) -> None:
    """Add per-bucket sums to a Redis pipeline (each bucket's sorted set expires after a day;
    EXPIRE goes after the writes: on a key that does not exist yet it does nothing)."""
    writes = BulkWrites()
    keys = {bucket: key_of(bucket) for bucket, _ in sums}
    for (bucket, member), value in sums.items():
        writes.add("ZINCRBY", keys[bucket], value, member)
    writes.queue(pipe)
    for key in keys.values():
        pipe.expire(key, BUCKET_TTL_S)


def agents(app: Any, settings: Settings, *, dwell_from_topic: bool = True) -> None:
    """Register the analytics agents on the worker's Faust app. ``dwell_from_topic=False`` when
    the worker's proximity agent counts dwell from the rows it computes (no re-read of
    NEARBY_CUSTOMERS); the agent reading the topic is for rows computed elsewhere (ksqlDB)."""
    import redis.asyncio as aioredis  # noqa: PLC0415
    from redis.exceptions import RedisError  # noqa: PLC0415

    rds = aioredis.Redis.from_url(settings.redis_address, socket_timeout=2,
                                  socket_connect_timeout=2)
    nearby_topic = app.topic(t.NEARBY_CUSTOMERS.name, value_serializer="raw", key_serializer="raw")
    events_topic = app.topic(t.OFFER_EVENTS.name, value_serializer="raw", key_serializer="raw")
    tracker = DwellTracker(settings.dwell_gap_s)
    errors: Counter[str] = Counter()

    async def write(sums: MutableMapping[tuple[int, str], float], key_of: Any) -> None:
        if not sums:
            return
        pipe = rds.pipeline(transaction=False)
        queue_sums(pipe, sums, key_of)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            errors["redis"] += 1
            if errors["redis"] % 100 == 1:
                log.warning("analytics: serving store unavailable (%s), %d batches lost",
                            type(exc).__name__, errors["redis"])

    async def dwell(stream: Any) -> None:
        async for values in stream.take(settings.worker_batch,
                                        within=settings.worker_batch_within_s):
            sums: defaultdict[tuple[int, str], float] = defaultdict(float)
            newest = 0
            for raw in values:
                try:
                    row = decode(NearbyCustomer, raw)
                except RecordError:
                    continue  # the policy agent dead-letters it
                tracker.add(row.uid, row.store_id, row.sku, row.ts, sums)
                newest = max(newest, row.ts)
            tracker.prune(newest)
            await write(sums, serving.analytics_dwell)

    if dwell_from_topic:
        app.agent(nearby_topic, name="analytics-dwell")(dwell)

    @app.agent(events_topic, name="analytics-redemptions")
    async def redemptions(stream: Any) -> None:
        async for values in stream.take(settings.worker_batch,
                                        within=settings.worker_batch_within_s):
            sums: defaultdict[tuple[int, str], float] = defaultdict(float)
            for raw in values:
                try:
                    event = decode(OfferEvent, raw)
                except RecordError:
                    continue
                if event.event != "redeemed":
                    continue
                try:
                    offer_raw = await rds.get(serving.offer(event.offer_id))
                    if offer_raw is None:
                        continue
                    first = await rds.set(serving.offer_event_mark(event.offer_id, COUNTED_MARK),
                                          1, nx=True, ex=BUCKET_TTL_S)
                except (RedisError, OSError):
                    errors["redis"] += 1
                    continue
                if not first:
                    continue
                offer = orjson.loads(offer_raw)
                sums[(bucket_of(event.ts), f"{offer['store_id']}:{offer['sku']}")] += 1
            await write(sums, serving.analytics_redemptions)

    __import__("stream_apps.basket", fromlist=["agents"]).agents(app, settings)  # bought together
    __import__("stream_apps.funnel", fromlist=["agents"]).agents(app, settings)  # funnel stages
