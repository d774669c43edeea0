"""The "bought together" analytic: pairs of products (``store_id:sku``) that one shopper
redeemed within one visit, i.e. at most ``basket_window_s`` (setting ``BASKET_WINDOW_S``,
default 2 h) apart, in the same store.

A pair counts once per shopper (at most once a day, the longest window the API serves),
whatever the order the redemptions arrive in and however often ``offer_events`` redelivers
them: the count is "how many shoppers took both". Counts go to minute buckets
(``serving.analytics_pairs``), in the minute of the later of the two redemptions, so the API can
sum any sliding window up to a day.

Why the state lives in Redis and not in the worker: ``offer_events`` is keyed by ``offer_id``, so
one shopper's redemptions land on different partitions (and workers), and a restarted worker
must not count again. Per redeemed event the agent
1. adds the redemption to the shopper's recent set (idempotent: same member, same score),
2. reads the shopper's redemptions within the window around it,
3. for each pair formed (``pairs_with``, pure), marks and counts it in one atomic Lua step
   (``ZADD NX`` on the shopper's counted pairs, then ``ZINCRBY`` only if the mark is new).
Every step is idempotent, so a crash anywhere followed by redelivery neither loses nor doubles
a count; two workers racing on one shopper's events both see each other's step 1 before step 2.

``BasketCounter`` is the same algorithm on plain dicts: the reference the unit tests check
against a brute-force definition. Both shopper keys are erased with the shopper
(``serving.shopper_keys``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from instore import serving
from instore import topics as t
from instore.records import OfferEvent, RecordError, decode, now_ms
from instore.settings import Settings

log = logging.getLogger(__name__)
HORIZON_MS = 24 * 3600 * 1000  # marks and recent redemptions are kept for a day
BUCKET_TTL_S = 25 * 3600

# KEYS: the shopper's counted pairs, the pairs bucket; ARGV: pair, ts, bucket ttl (s).
COUNT_ONCE_LUA = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 1 then
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


class Redemption(NamedTuple):
    store_id: str
    sku: int
    ts: int
    offer_id: str


def bucket_of(ts_ms: int) -> int:
    return ts_ms // 1000 // serving.ANALYTICS_BUCKET_S


def pairs_with(new: Redemption, recent: Iterable[Redemption], window_ms: int) -> dict[str, int]:
    """The pairs ``new`` forms with the shopper's other redemptions: same store, another SKU,
    at most ``window_ms`` apart (either side). Value: when the pair was complete (the later of
    the two times; the earliest such moment when several redemptions qualify). Pure."""
    out: dict[str, int] = {}
    for other in recent:
        if other.store_id != new.store_id or other.sku == new.sku:
            continue
        if abs(other.ts - new.ts) > window_ms:
            continue
        pair = serving.basket_pair(new.store_id, new.sku, other.sku)
        done = max(new.ts, other.ts)
        out[pair] = min(done, out.get(pair, done))
    return out


class BasketCounter:
    """The agent's algorithm on in-memory state (one process, no I/O): for tests and as the
    executable definition. ``counts`` maps (minute bucket, pair) to shoppers."""

    def __init__(self, window_s: float, horizon_ms: int = HORIZON_MS) -> None:
        self.window_ms = int(window_s * 1000)
        self.horizon_ms = horizon_ms
        self.recent: defaultdict[str, dict[Redemption, int]] = defaultdict(dict)
        self.counted: defaultdict[str, dict[str, int]] = defaultdict(dict)
        self.counts: Counter[tuple[int, str]] = Counter()

    def add(self, uid: str, redemption: Redemption, now: int) -> list[str]:
        """Process one redeemed event (maybe a redelivery); the pairs it newly counted."""
        cutoff = now - self.horizon_ms
        if redemption.ts < cutoff:
            return []
        recent, counted = self.recent[uid], self.counted[uid]
        recent[redemption] = redemption.ts
        for old in [k for k, ts in recent.items() if ts < cutoff]:
            del recent[old]
        for pair in [k for k, ts in counted.items() if ts < cutoff]:
            del counted[pair]
        window = [r for r in recent if abs(r.ts - redemption.ts) <= self.window_ms]
        new = []
        for pair, ts in sorted(pairs_with(redemption, window, self.window_ms).items()):
            if pair in counted:
                continue
            counted[pair] = ts
            self.counts[(bucket_of(ts), pair)] += 1
            new.append(pair)
        return new

    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, pair), n in self.counts.items():
            out[pair] += n
        return out


def recent_member(r: Redemption) -> bytes:
    return orjson.dumps([r.store_id, r.sku, r.offer_id])


def parse_recent(member: bytes | str, ts: float) -> Redemption | None:
    try:
        store_id, sku, offer_id = orjson.loads(member)
        return Redemption(str(store_id), int(sku), int(ts), str(offer_id))
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None


def agents(app: Any, settings: Settings) -> None:
    """Register the basket agent on the worker's Faust app."""
    import redis.asyncio as aioredis  # noqa: PLC0415
    from redis.exceptions import RedisError  # noqa: PLC0415

    rds = aioredis.Redis.from_url(settings.redis_address, socket_timeout=2,
                                  socket_connect_timeout=2)
    count_once = rds.register_script(COUNT_ONCE_LUA)
    events_topic = app.topic(t.OFFER_EVENTS.name, value_serializer="raw", key_serializer="raw")
    window_ms = settings.basket_window_s * 1000
    stats: Counter[str] = Counter()

    async def redeemed(event: OfferEvent) -> None:
        offer_raw = await rds.get(serving.offer(event.offer_id))
        if offer_raw is None:
            stats["offer_unknown"] += 1  # expired from the serving store: nothing to pair
            return
        offer = orjson.loads(offer_raw)
        uid = str(offer.get("uid") or event.uid)
        new = Redemption(str(offer["store_id"]), int(offer["sku"]), event.ts, event.offer_id)
        cutoff = now_ms() - HORIZON_MS
        if new.ts < cutoff:
            stats["too_old"] += 1
            return
        recent_key, counted_key = serving.basket_recent(uid), serving.basket_counted(uid)
        pipe = rds.pipeline(transaction=False)
        pipe.zadd(recent_key, {recent_member(new): new.ts})
        pipe.zremrangebyscore(recent_key, "-inf", f"({cutoff}")
        pipe.zremrangebyscore(counted_key, "-inf", f"({cutoff}")
        pipe.expire(recent_key, HORIZON_MS // 1000)
        pipe.expire(counted_key, HORIZON_MS // 1000)
        pipe.zrangebyscore(recent_key, new.ts - window_ms, new.ts + window_ms, withscores=True)
        *_, rows = await pipe.execute()
        window = [r for r in (parse_recent(m, s) for m, s in rows) if r is not None]
        pairs = pairs_with(new, window, window_ms)
        if not pairs:
            return
        pipe = rds.pipeline(transaction=False)
        for pair, ts in sorted(pairs.items()):
            await count_once(keys=[counted_key, serving.analytics_pairs(bucket_of(ts))],
                             args=[pair, ts, BUCKET_TTL_S], client=pipe)
        stats["pairs"] += sum(int(x) for x in await pipe.execute())

    @app.agent(events_topic, name="analytics-basket")
    async def basket(stream: Any) -> None:
        async for values in stream.take(settings.worker_batch,
                                        within=settings.worker_batch_within_s):
            for raw in values:
                try:
                    event = decode(OfferEvent, raw)
                except RecordError:
                    stats["bad_event"] += 1  # skipped, as the redemptions agent does
                    continue
                if event.event != "redeemed":
                    continue
                try:
                    await redeemed(event)
                except (RedisError, OSError) as exc:
                    stats["redis"] += 1
                    if stats["redis"] % 100 == 1:
                        log.warning("basket: serving store unavailable (%s), %d events lost",
                                    type(exc).__name__, stats["redis"])
                except (KeyError, ValueError, TypeError) as exc:
                    stats["bad_offer"] += 1
                    if stats["bad_offer"] % 100 == 1:
                        log.warning("basket: unreadable offer in the serving store (%s), %d so far",
                                    type(exc).__name__, stats["bad_offer"])
