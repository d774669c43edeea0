"""Shoppers: consent (the registration that yields a shopper token), Ably token requests for
their own channel, their latest offers with each one's redemption code and "show me where"
map, and erasure."""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any, cast

import anyio.from_thread
import orjson
import redis
from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field

from api import redemption, revocations, wayfinding
from api.catalog import store_meta
from api.deps import MaybeShopper, ServicesDep, Shopper, ShopperOrOps
from api.models import (
    CheckinIn,
    ConsentIn,
    ConsentPublic,
    ErasurePublic,
    Ident,
    KioskInteractionPublic,
    TokenRequestPublic,
    Uid,
)
from api.publisher import PublishError
from api.routes.offers import load_offer
from api.services import Services
from instore import records as r
from instore import serving
from instore import shopper_tokens as tokens
from instore import topics as t
from instore.ably import RevocationError, revoke_client_tokens
from instore.channels import shopper_channel
from instore.settings import is_loopback

log = logging.getLogger(__name__)
router = APIRouter(prefix="/shoppers", tags=["shoppers"])

UidPath = Annotated[Uid, Path(description="the shopper's opaque id")]
TOKEN_TTL_MS = 3600 * 1000


def unavailable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc))


VIEW_WAIT_S = 2.0


def _token(services: Services, uid: str) -> str:
    s = services.settings
    return tokens.issue(s.shopper_secret, uid, ttl_s=s.shopper_token_ttl_s)


@router.post("/{uid}/consent", response_model=ConsentPublic)
def set_consent(uid: UidPath, body: ConsentIn, services: ServicesDep,
                caller: MaybeShopper) -> ConsentPublic:
    """Opt in or out. The first opt-in is the registration (no auth); changing an existing
    consent needs that shopper's bearer token, and a uid erased within the stream retention
    cannot be registered again. Answers 503 while the consent view has not caught up (it
    could not tell whether the uid is taken). Opting out revokes every earlier token of the
    shopper. Answers with a fresh shopper token."""
    if not services.tables.wait_caught_up(VIEW_WAIT_S):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="the consent view is catching up: try again in a moment",
                            headers={"Retry-After": "2"})
    secret = services.settings.shopper_secret
    # Erased first: the erasure marks the uid in Redis before it answers, while the consent
    # view learns of the tombstone from the topic a moment later (it may still hold the consent).
    if revocations.was_erased(services.redis, secret, uid):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="this uid was erased: register with a new one")
    existing = services.tables.consent(uid)
    if existing is not None and caller != uid:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            detail="this shopper has a consent already: send their bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    record = r.ShopperConsent(uid=uid, opted_in=body.opted_in,
                              channels=list(dict.fromkeys(body.channels)), updated_at=r.now_ms())
    try:
        services.publisher.send(t.SHOPPER_CONSENTS, record)
    except PublishError as exc:
        raise unavailable(exc) from None
    services.tables.apply(t.SHOPPER_CONSENTS, uid, record)
    if not record.opted_in:
        revocations.revoke_tokens(services.redis, secret, uid, services.settings.shopper_token_ttl_s)
    log.info("consent recorded opted_in=%s", record.opted_in)
    return ConsentPublic(**record.model_dump(), shopper_token=_token(services, uid))


@router.get("/{uid}/consent", response_model=ConsentPublic)
def get_consent(uid: UidPath, services: ServicesDep, _caller: Shopper) -> ConsentPublic:
    """The shopper's current consent (their own token only), with a fresh token: the phone
    page renews its token this way."""
    existing = services.tables.consent(uid)
    if existing is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="no consent recorded for this shopper")
    return ConsentPublic(**existing.model_dump(), shopper_token=_token(services, uid))


@router.post("/{uid}/checkin", response_model=KioskInteractionPublic,
             status_code=status.HTTP_201_CREATED)
def checkin(uid: UidPath, body: CheckinIn, services: ServicesDep,
            _caller: Shopper) -> KioskInteractionPublic:
    """Check in at the kiosk that shows ``code``, from the shopper's own phone (their token):
    the kiosk then shows their offers. Needs their consent to kiosk offers (403); a code is
    used once (409) and lives two minutes (404)."""
    consent = services.tables.consent(uid)
    if consent is None or not consent.opted_in or "kiosk" not in consent.channels:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="no consent to offers at a kiosk: opt in with the kiosk channel")
    key = serving.checkin_code(body.code)
    held = cast(dict[str, str], services.redis.hgetall(key))
    if not held.get("kiosk_id") or not held.get("store_id"):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="no such check-in code (it may have expired): ask the kiosk "
                            "for a new one")
    if not services.redis.hsetnx(key, "uid", uid):
        raise HTTPException(status.HTTP_409_CONFLICT, detail="this code was used already")
    record = r.KioskInteraction(store_id=held["store_id"], kiosk_id=held["kiosk_id"], uid=uid,
                                action="checkin", ts=r.now_ms())
    try:
        services.publisher.send(t.KIOSK_INTERACTIONS, record, timestamp_ms=record.ts)
    except PublishError as exc:
        services.redis.hdel(key, "uid")  # the check-in did not happen: the code stays usable
        raise unavailable(exc) from None
    return KioskInteractionPublic(store_id=record.store_id, kiosk_id=record.kiosk_id,
                                  action=record.action, ts=record.ts)


@router.post("/{uid}/ably-token", response_model=TokenRequestPublic)
async def shopper_ably_token(uid: UidPath, services: ServicesDep,
                             _caller: Shopper) -> TokenRequestPublic:
    """An Ably TokenRequest for the shopper's own channel ``shopper:{uid}`` (subscribe, history),
    valid one hour. Works with Ably itself and the local push hub. None for a shopper without a
    consent record (erased, or never registered): 404, so ably-js stops renewing."""
    if services.tables.consent(uid) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="no consent recorded for this shopper: no push token")
    req = await services.ably.auth.create_token_request(
        token_params={"capability": {shopper_channel(uid): ["subscribe", "history"]},
                      "client_id": uid, "ttl": TOKEN_TTL_MS})
    return TokenRequestPublic(**req.to_dict())


@router.get("/{uid}/offers")
def shopper_offers(uid: UidPath, services: ServicesDep, _caller: ShopperOrOps) -> list[dict]:
    """The shopper's latest offers, newest first (the shopper's own token, or role ops)."""
    raw = services.redis.lrange(serving.offers_of(uid), 0, serving.LATEST_OFFERS_KEEP - 1)
    return [orjson.loads(item) for item in raw]


OfferPath = Annotated[Ident, Path(description="one of the shopper's offers")]


class RedemptionCodePublic(BaseModel):
    offer_id: str
    code: str = Field(description="what the cashier types if the QR code will not scan")
    qr_svg: str = Field(description="the code as a QR code (SVG) for the till's scanner")
    expires_at: int
    redeemed_at: int | None = Field(description="when a till redeemed it, if it did")


def own_offer(services: Services, uid: str, offer_id: str) -> r.Offer:
    """One of this shopper's offers (404 for no such offer, or another shopper's)."""
    offer = load_offer(services, offer_id)
    if offer is None or offer.uid != uid:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="no such offer for this shopper (or it has expired)")
    return offer


@router.get("/{uid}/offers/{offer_id}/code", response_model=RedemptionCodePublic)
def redemption_code(uid: UidPath, offer_id: OfferPath, services: ServicesDep,
                    _caller: Shopper) -> RedemptionCodePublic:
    """The code the shopper shows at the till for one of their offers (their own token only):
    a QR code and the same text for typing. The till redeems it once (``POST /redemptions``);
    ``redeemed_at`` tells the phone it was. An expired offer has no code (410)."""
    offer = own_offer(services, uid, offer_id)
    code = redemption.code_of(services.settings.shopper_secret, offer.offer_id)
    key = serving.redeem_code(code)
    redeemed = services.redis.hget(key, "redeemed_at")
    if redeemed is None and r.now_ms() >= offer.expires_at:
        raise HTTPException(status.HTTP_410_GONE, detail="this offer has expired")
    pipe = services.redis.pipeline()
    pipe.hset(key, mapping={"offer_id": offer.offer_id, "store_id": offer.store_id,
                            "expires_at": offer.expires_at})
    pipe.expireat(key, offer.expires_at // 1000 + serving.REDEEM_CODE_KEEP_S)
    pipe.execute()
    return RedemptionCodePublic(offer_id=offer.offer_id, code=redemption.display(code),
                                qr_svg=redemption.qr_svg(code), expires_at=offer.expires_at,
                                redeemed_at=int(redeemed) if redeemed else None)


def offer_map(services: Services, offer: r.Offer) -> wayfinding.WherePublic:
    """'Show me where' for an offer: its store's shelves, the product, and the shopper's last
    position there, in the store's units. 404 when the product is not in the catalog."""
    product = services.tables.product(offer.store_id, offer.sku)
    if product is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="this product is not on the store's floor plan")
    here = None
    raw = services.redis.hget(serving.store_positions(offer.store_id), offer.uid)
    if raw:
        try:
            pos = orjson.loads(raw)
            here = (float(pos["latitude"]), float(pos["longitude"]),
                    max(0, r.now_ms() - int(pos["ts"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            here = None
    meta = store_meta(services.redis, offer.store_id)
    return wayfinding.floor_map(offer.store_id, services.tables.products_of(offer.store_id),
                                product, here, meta.country if meta else None)


@router.get("/{uid}/offers/{offer_id}/where", response_model=wayfinding.WherePublic)
def offer_where(uid: UidPath, offer_id: OfferPath, services: ServicesDep,
                _caller: Shopper) -> wayfinding.WherePublic:
    """'Show me where' (the shopper's own token): a small floor map of the offer's store with
    the product's shelf and the shopper's last position, distances in the store's units
    (feet in the US, metres elsewhere). Other shelves are unnamed; no other shopper shows."""
    return offer_map(services, own_offer(services, uid, offer_id))


@router.delete("/{uid}", response_model=ErasurePublic)
def erase_shopper(uid: UidPath, services: ServicesDep, _caller: ShopperOrOps) -> ErasurePublic:
    """Erase a shopper: a tombstone in ``shopper_consents`` (the worker stops offering at once),
    and every trace in the serving store. The answer lists what was erased."""
    try:
        services.publisher.send(t.SHOPPER_CONSENTS, None, key=uid)
    except PublishError as exc:
        raise unavailable(exc) from None
    services.tables.apply(t.SHOPPER_CONSENTS, uid, None)
    s = services.settings
    revocations.revoke_tokens(services.redis, s.shopper_secret, uid, s.shopper_token_ttl_s)
    # The marker lives as long as a stream record of the shopper may: the archiver archives
    # such a record without identity instead of giving the shopper a new archive key.
    revocations.mark_erased(services.redis, s.shopper_secret, uid,
                            t.stream_expiry_within_ms(s.stream_retention_ms) // 1000)
    report = erase_from_serving(services, uid)
    report.aof_rewrite_started = rewrite_append_only_file(services.redis)
    report.push_tokens_revoked = _revoke_push_tokens(services, uid)
    pushed = ["push tokens"] if report.push_tokens_revoked else []
    if report.push_tokens_revoked and (s.ably_rest_host is None or is_loopback(s.ably_rest_host)):
        pushed.append("push history")  # the local hub forgets the channel on revocation
    report.erased_now = ["serving store", "shopper tokens", *pushed, "archive identity"]
    report.compacted_within_s = t.compacted_within_ms(s.compaction_ms) // 1000
    report.streams_expire_within_s = t.stream_expiry_within_ms(s.stream_retention_ms) // 1000
    log.info("shopper erased: %d keys, %d offers, %d stores", len(report.redis_keys_deleted),
             report.offers_deleted, len(report.store_sets_cleaned))
    return report


def _revoke_push_tokens(services: Services, uid: str) -> bool:
    """Revoke the shopper's Ably tokens (clientId = uid) at Ably or the local hub, so open
    connections close now instead of at expiry. A failure is logged; erasure goes on."""
    try:
        anyio.from_thread.run(revoke_client_tokens, services.ably, uid)
    except RevocationError as exc:
        log.warning("push token revocation failed: %s", exc)
        return False
    return True


def offers_owned_by(rds: Any, uid: str) -> set[str]:
    """Ids of this shopper's offers stored by id (``serving.offer``, kept a day) that may have
    left their capped latest-offers list: a scan of the offer keys (erasure is rare)."""
    prefix = serving.offer("")
    found: set[str] = set()

    def check(keys: list[str]) -> None:
        for key, raw in zip(keys, rds.mget(keys), strict=True):
            try:
                owner = orjson.loads(raw).get("uid") if raw else None
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if owner == uid:
                found.add(key[len(prefix):])

    batch: list[str] = []
    for key in rds.scan_iter(match=serving.offer("*"), count=1000):
        if ":event:" in key[len(prefix):]:
            continue  # a funnel mark (offer id and event only)
        batch.append(key)
        if len(batch) >= 500:
            check(batch)
            batch = []
    if batch:
        check(batch)
    return found


def rewrite_append_only_file(rds: Any) -> bool:
    """Start Redis' append-only-file rewrite, so the erased shopper's old writes leave the disk
    (the rewritten file holds only what is still there). A rewrite already running may predate
    the erasure: then one more is started once it ends. False where Redis keeps no AOF or will
    not say (a managed Redis)."""
    try:
        conf = {str(k, "utf-8") if isinstance(k, bytes) else k: v
                for k, v in rds.config_get("appendonly").items()}
        if conf.get("appendonly") not in ("yes", b"yes"):
            return False
        rds.bgrewriteaof()
    except redis.ResponseError as exc:
        if "in progress" not in str(exc):
            log.warning("AOF rewrite after erasure not started: %s", exc)
            return False
        threading.Thread(target=_rewrite_when_idle, args=(rds,), daemon=True).start()
    except redis.RedisError as exc:
        log.warning("AOF rewrite after erasure not started: %s", exc)
        return False
    return True


def _rewrite_when_idle(rds: Any, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if not int(rds.info("persistence").get("aof_rewrite_in_progress", 0)):
                rds.bgrewriteaof()
                return
        except redis.RedisError as exc:
            log.warning("AOF rewrite after erasure not started: %s", exc)
            return
        time.sleep(0.5)
    log.warning("AOF rewrite after erasure not started: a rewrite ran for %.0f s", timeout_s)


def erase_from_serving(services: Services, uid: str) -> ErasurePublic:
    rds = services.redis
    offer_ids = set()
    for item in rds.lrange(serving.offers_of(uid), 0, -1):
        try:
            offer_ids.add(orjson.loads(item)["offer_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    offer_ids |= offers_owned_by(rds, uid)  # older offers the capped list no longer holds
    secret = services.settings.shopper_secret
    for oid in offer_ids:  # the redemption codes of those offers (no uid in them, but gone too)
        rds.delete(serving.redeem_code(redemption.code_of(secret, oid)))
    deleted_keys = [key for key in serving.shopper_keys(uid) if rds.delete(key)]
    offers_deleted = sum(int(rds.delete(serving.offer(oid))) for oid in offer_ids)
    cleaned = []
    live_pattern = serving.store_live("*")
    prefix, suffix = live_pattern.split("*")
    for key in rds.scan_iter(match=live_pattern, count=500):
        store_id = key[len(prefix):len(key) - len(suffix)]
        removed = rds.zrem(key, uid) + rds.hdel(serving.store_positions(store_id), uid)
        if removed:
            cleaned.append(store_id)
    pos_pattern = serving.store_positions("*")
    pprefix, psuffix = pos_pattern.split("*")
    for key in rds.scan_iter(match=pos_pattern, count=500):
        store_id = key[len(pprefix):len(key) - len(psuffix)]
        if rds.hdel(key, uid) and store_id not in cleaned:
            cleaned.append(store_id)
    feed_removed = 0
    for item in cast(list[str], rds.lrange(serving.offers_feed(), 0, -1)):
        try:
            owner = orjson.loads(item).get("uid")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if owner == uid:
            feed_removed += rds.lrem(serving.offers_feed(), 0, item)
    return ErasurePublic(uid=uid, tombstoned=[t.SHOPPER_CONSENTS.name],
                         redis_keys_deleted=deleted_keys, offers_deleted=offers_deleted,
                         store_sets_cleaned=sorted(cleaned), feed_entries_removed=feed_removed)
