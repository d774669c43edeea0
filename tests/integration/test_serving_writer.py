"""The worker's serving-store writer against a real Redis: offers are there with their batch
(the API looks them up as soon as the phone shows one), counters are coalesced."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import redis

from instore import serving
from instore.records import Offer, now_ms
from stream_apps.serving_writer import ServingWriter


def _offer(uid: str) -> Offer:
    ts = now_ms()
    return Offer(offer_id=uuid.uuid4().hex[:24], uid=uid, store_id="store-001", pid="promo-1",
                 sku=7, title="Dark chocolate", discount_pct=25.0, distance_ft=3.0, ts=ts,
                 expires_at=ts + 900_000)


def test_offers_are_written_with_their_batch_counters_once_a_second(redis_url: str) -> None:
    uid = f"writer-{uuid.uuid4().hex[:8]}"
    offer = _offer(uid)
    rds = redis.Redis.from_url(redis_url)
    before = int(rds.hget(serving.totals(), "positions") or 0)

    async def batch() -> None:
        writer = ServingWriter(redis_url, interval_s=3600)  # no coalesced flush in this test
        await writer.write_batch([], [offer], Counter(positions=5))
        await writer.settle()  # applied while the agent goes on with its next batch
        assert rds.get(serving.offer(offer.offer_id)) == offer.to_json()
        assert rds.lrange(serving.offers_of(uid), 0, -1) == [offer.to_json()]
        assert int(rds.hget(serving.totals(), "positions") or 0) == before  # not yet
        await writer.flush()
        await writer.settle()
        assert int(rds.hget(serving.totals(), "positions") or 0) == before + 5
        await writer.close()

    asyncio.run(batch())


def test_an_offered_shoppers_position_goes_with_the_offer(redis_url: str) -> None:
    """"Show me where" on a fresh offer needs the shopper's position: it is written with the
    offer, not a second later with the coalesced flush (other shoppers' positions wait)."""
    uid, other = f"near-{uuid.uuid4().hex[:8]}", f"walker-{uuid.uuid4().hex[:8]}"
    offer = _offer(uid)
    rds = redis.Redis.from_url(redis_url)
    ts = now_ms()

    async def batch() -> None:
        writer = ServingWriter(redis_url, interval_s=3600)
        positions = [(uid, "store-001", 40.7, -73.9, ts), (other, "store-001", 40.8, -73.8, ts)]
        await writer.write_batch(positions, [offer], Counter())
        await writer.settle()
        here = rds.hget(serving.store_positions("store-001"), uid)
        assert here is not None and b'"latitude":40.7' in here
        assert rds.hget(serving.store_positions("store-001"), other) is None  # not yet
        await writer.flush()
        await writer.settle()
        assert rds.hget(serving.store_positions("store-001"), other) is not None
        await writer.close()

    asyncio.run(batch())


def test_writes_apply_in_the_order_sent_without_the_agent_waiting(redis_url: str) -> None:
    uid = f"order-{uuid.uuid4().hex[:8]}"
    first, second = _offer(uid), _offer(uid)
    rds = redis.Redis.from_url(redis_url)

    async def batches() -> None:
        writer = ServingWriter(redis_url, interval_s=3600)
        await writer.write_batch([], [first], Counter())
        await writer.write_batch([], [second], Counter())  # sent while the first may run
        await writer.settle()
        assert rds.lrange(serving.offers_of(uid), 0, -1) == [second.to_json(), first.to_json()]
        await writer.close()

    asyncio.run(batches())
