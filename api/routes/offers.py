"""Offers: a shopper reports opening an offer (redeeming is the till's: api/routes/redemptions.py);
marketers and analysts read the live offers feed."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import MarketerOrAnalyst, ServicesDep, Shopper
from api.models import Ident, OfferEventIn, OfferEventPublic
from api.publisher import PublishError
from api.services import Services
from instore import records as r
from instore import serving
from instore import topics as t

log = logging.getLogger(__name__)
router = APIRouter(prefix="/offers", tags=["offers"])

EVENT_MARK_TTL_S = 30 * 24 * 3600


def load_offer(services: Services, offer_id: str) -> r.Offer | None:
    """The offer by id from the serving store (kept a day), or None."""
    raw = services.redis.get(serving.offer(offer_id))
    if raw is None:
        return None
    try:
        return r.validate(r.Offer, orjson.loads(raw))
    except (r.RecordError, orjson.JSONDecodeError):
        return None


def record_event(services: Services, offer: r.Offer,
                 event: Literal["opened", "redeemed"]) -> OfferEventPublic:
    """The one path every opened/redeemed takes: an ``offer_events`` record (what the funnel
    counters, analytics and the archive read), then the promotion's and store's counters, once
    per offer and event. 503 when Kafka does not take it."""
    record = r.OfferEvent(offer_id=offer.offer_id, uid=offer.uid, event=event, ts=r.now_ms())
    try:
        services.publisher.send(t.OFFER_EVENTS, record, timestamp_ms=record.ts)
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    first = bool(services.redis.set(serving.offer_event_mark(offer.offer_id, event), record.ts,
                                    nx=True, ex=EVENT_MARK_TTL_S))
    if first:
        pipe = services.redis.pipeline()
        pipe.hincrby(serving.promo_stats(offer.pid), event, 1)
        pipe.hincrby(serving.store_stats(offer.store_id), event, 1)
        pipe.hincrby(serving.totals(), event, 1)
        pipe.execute()
    return OfferEventPublic(offer_id=offer.offer_id, event=event, ts=record.ts, counted=first)


@router.post("/{offer_id}/events", response_model=OfferEventPublic)
def offer_event(offer_id: Annotated[Ident, Path()], body: OfferEventIn, services: ServicesDep,
                uid: Shopper) -> OfferEventPublic:
    """Record that the shopper opened one of their offers: an ``offer_events`` record, and the
    promotion's and store's funnel counters (once per offer). A shopper cannot declare an
    offer redeemed (403): the till redeems the code the offer shows (``POST /redemptions``)."""
    if body.event == "redeemed":
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="an offer is redeemed at the till: show its code to the "
                            "cashier")
    offer = load_offer(services, offer_id)
    if offer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such offer (or it has expired)")
    if offer.uid != uid:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="this offer belongs to another shopper")
    return record_event(services, offer, body.event)


@router.get("/feed")
def offers_feed(services: ServicesDep, _role: MarketerOrAnalyst,
                limit: Annotated[int, Query(ge=1, le=200)] = 50,
                store_id: Annotated[Ident | None, Query()] = None) -> list[dict]:
    """The latest offers across stores, newest first (optionally one store's), without the
    shopper: marketers and analysts see what was offered where, never to whom."""
    out = []
    for item in services.redis.lrange(serving.offers_feed(), 0, 199):
        try:
            offer = orjson.loads(item)
        except orjson.JSONDecodeError:
            continue
        if store_id is None or offer.get("store_id") == store_id:
            offer.pop("uid", None)
            out.append(offer)
        if len(out) >= limit:
            break
    return out
