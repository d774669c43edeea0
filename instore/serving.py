"""The Redis serving store's key layout (derived state; rebuildable from the topics).

Writers: the Faust worker (offers, per-store live shoppers, counters) and the push sink
(delivered). Readers: the API and pages. Keys hold no personal data beyond the opaque uid.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "instore"
LATEST_OFFERS_KEEP = 20
LIVE_WINDOW_MS = 60_000


def offers_of(uid: str) -> str:
    """LIST of the shopper's latest offers (JSON, newest first, capped)."""
    return f"{PREFIX}:offers:{uid}"


def offer(offer_id: str) -> str:
    """STRING: one offer's JSON by id (for pages and event handling)."""
    return f"{PREFIX}:offer:{offer_id}"


def store_live(store_id: str) -> str:
    """ZSET uid -> last seen ms: shoppers seen in a store (live count = ZCOUNT of recent)."""
    return f"{PREFIX}:store:{store_id}:live"


def store_positions(store_id: str) -> str:
    """HASH uid -> JSON {lat, lon, ts}: last position per shopper, for the floor map."""
    return f"{PREFIX}:store:{store_id}:positions"


def promo_stats(pid: str) -> str:
    """HASH counters for one promotion: nearby, sent, delivered, opened, redeemed."""
    return f"{PREFIX}:stats:promo:{pid}"


def store_stats(store_id: str) -> str:
    """HASH counters for one store: positions, nearby, sent, delivered, opened, redeemed."""
    return f"{PREFIX}:stats:store:{store_id}"


def totals() -> str:
    """HASH global counters: positions, nearby, offers, dead_letters, dead:<reason>."""
    return f"{PREFIX}:stats:totals"


def offers_feed() -> str:
    """LIST of the latest offers across stores (JSON, newest first, capped at 200)."""
    return f"{PREFIX}:feed:offers"


def checkin(uid: str) -> str:
    """STRING "store_id:kiosk_id": the kiosk a shopper is checked in at (set by the push sink
    from `kiosk_interactions`, expires after an idle hour)."""
    return f"{PREFIX}:checkin:{uid}"


def consent_channels(uid: str) -> str:
    """STRING: the channels a shopper consented to ("phone,kiosk"; "" = opted out), kept by the
    push sink from `shopper_consents` (a copy of its view, for operators and tests) and deleted
    by it on erasure (the tombstone)."""
    return f"{PREFIX}:push:channels:{uid}"


CHECKIN_CODE_TTL_S = 120  # a kiosk's one-time check-in code lives this long


def checkin_code(code: str) -> str:
    """Hash: the kiosk that showed a one-time check-in code (``store_id``, ``kiosk_id``) and,
    once a shopper's phone confirmed it, their ``uid``; expires after CHECKIN_CODE_TTL_S."""
    return f"{PREFIX}:checkin-code:{code}"


REDEEM_CODE_KEEP_S = 24 * 3600  # a redemption code's record outlives its offer this long


def redeem_code(code: str) -> str:
    """HASH: the offer a redemption code stands for (``offer_id``, ``store_id``,
    ``expires_at``) and, once a till redeemed it, ``redeemed_at``. Written by the API when the
    shopper's phone asks for the code; kept REDEEM_CODE_KEEP_S past the offer's expiry (so the
    till can say "expired" or "already redeemed"). The code is a keyed hash of the offer id,
    not the uid (api/redemption.py)."""
    return f"{PREFIX}:redeem-code:{code}"


def delivered(offer_id: str) -> str:
    """STRING marker: the push sink has published this offer (idempotency across restarts)."""
    return f"{PREFIX}:delivered:{offer_id}"


def archive_key(uid: str) -> str:
    """STRING: the shopper's archive key (random, hex): the archive holds only pseudonyms keyed
    with it (instore/archive.py), so deleting it at erasure unlinks every archived row."""
    return f"{PREFIX}:archive-key:{uid}"


def shopper_keys(uid: str) -> list[str]:
    """Every key that holds this shopper's data, for erasure (plus their uid in store sets)."""
    return [offers_of(uid), checkin(uid), basket_recent(uid), basket_counted(uid), archive_key(uid)]


def tokens_revoked(pseudonym: str) -> str:
    """STRING ms: a shopper's tokens issued before it are refused (key: a keyed hash, no uid)."""
    return f"{PREFIX}:tokens-revoked:{pseudonym}"


RATE_LIMITS_PREFIX = f"{PREFIX}:ratelimit"  # the API's shared rate-limit windows (``limits``)


def pseudonym(secret: bytes, uid: str) -> str:
    """A keyed hash of a uid (HMAC with the shopper secret): what may outlive an erasure."""
    return hmac.new(secret, f"shopper:{uid}".encode(), hashlib.sha256).hexdigest()[:32]


def erased(pseudonym: str) -> str:
    """Marker: this (hashed) uid was erased and may not be registered again for a while."""
    return f"{PREFIX}:erased:{pseudonym}"


def quality(bucket: int) -> str:
    """HASH data-quality counters of minute ``bucket`` (epoch s // 60), written by the archiver:
    ``records:<topic>``, ``dead:<topic>:<reason>``, ``late``, ``out_of_order``."""
    return f"{PREFIX}:quality:{bucket}"


COUNTER_FIELDS = ("nearby", "sent", "delivered", "opened", "redeemed")


def reached(stage: str) -> str:
    """Field (in ``promo_stats``, ``store_stats``, ``totals``) counting the offers that reached
    ``stage`` (delivered/opened/redeemed) or a later one, each offer once: the funnel's stages
    (written by the worker's funnel agent, ``stream_apps/funnel.py``). The plain ``delivered``,
    ``opened``, ``redeemed`` fields count events as their producers saw them."""
    return f"reached_{stage}"


# API-owned keys (catalog metadata, event idempotency) and the analytics agent's buckets ----
ANALYTICS_BUCKET_S = 60
ANALYTICS_WINDOW_S = 3600


def store_meta(store_id: str) -> str:
    """STRING: a store's metadata JSON (name, anchor lat/lon, geofence radius, country)."""
    return f"{PREFIX}:store:{store_id}:meta"


def stores_index() -> str:
    """SET of the store ids that have metadata."""
    return f"{PREFIX}:stores"


def offer_event_mark(offer_id: str, event: str) -> str:
    """STRING marker: this offer's opened/redeemed was counted once (funnel idempotency)."""
    return f"{PREFIX}:offer:{offer_id}:event:{event}"


def analytics_dwell(bucket: int) -> str:
    """ZSET "store_id:sku" -> seconds shoppers dwelt near it in minute ``bucket`` (epoch s//60)."""
    return f"{PREFIX}:analytics:dwell:{bucket}"


def analytics_redemptions(bucket: int) -> str:
    """ZSET "store_id:sku" -> redemptions in minute ``bucket`` (epoch s // 60)."""
    return f"{PREFIX}:analytics:redeemed:{bucket}"


# The basket agent ("bought together", stream_apps/basket.py) ------------------------------
def basket_recent(uid: str) -> str:
    """ZSET JSON [store_id, sku, offer_id] -> ts: the shopper's redemptions of the last day."""
    return f"{PREFIX}:basket:{uid}:recent"


def basket_counted(uid: str) -> str:
    """ZSET pair -> ts: the pairs already counted for this shopper (once per shopper and pair
    per day, whatever is redelivered)."""
    return f"{PREFIX}:basket:{uid}:counted"


def analytics_pairs(bucket: int) -> str:
    """ZSET pair (``basket_pair``) -> shoppers who redeemed both products within one basket
    window, counted in the minute ``bucket`` (epoch s // 60) of the later redemption."""
    return f"{PREFIX}:analytics:pairs:{bucket}"


def basket_pair(store_id: str, sku_a: int, sku_b: int) -> str:
    """A pair's member name: ``store_id:low_sku:high_sku`` (the same for either order)."""
    low, high = sorted((sku_a, sku_b))
    return f"{store_id}:{low}:{high}"


def parse_basket_pair(member: str) -> tuple[str, int, int] | None:
    """(store_id, low_sku, high_sku) of a ``basket_pair`` member, or None if malformed."""
    parts = member.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not all(x.isdigit() for x in parts[1:]):
        return None
    return parts[0], int(parts[1]), int(parts[2])
