"""Offers: a shopper reports opening or redeeming an offer; marketers and analysts read the
live offers feed."""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import MarketerOrAnalyst, ServicesDep, Shopper
from api.models import Ident, OfferEventIn, OfferEventPublic
from api.publisher import PublishError
from instore import records as r
from instore import serving
from instore import topics as t

log = logging.getLogger(__name__)
router = APIRouter(prefix="/offers", tags=["offers"])

EVENT_MARK_TTL_S = 30 * 24 * 3600


@router.post("/{offer_id}/events", response_model=OfferEventPublic)
def offer_event(offer_id: Annotated[Ident, Path()], body: OfferEventIn, services: ServicesDep,
                uid: Shopper) -> OfferEventPublic:
    """Record that the shopper opened or redeemed one of their offers: an ``offer_events``
    record, and the promotion's and store's funnel counters (once per offer and event)."""
    raw = services.redis.get(serving.offer(offer_id))
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such offer (or it has expired)")
    try:
        offer = r.validate(r.Offer, orjson.loads(raw))
    except (r.RecordError, orjson.JSONDecodeError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such offer") from None
    if offer.uid != uid:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="this offer belongs to another shopper")
    event = r.OfferEvent(offer_id=offer_id, uid=uid, event=body.event, ts=r.now_ms())
    try:
        services.publisher.send(t.OFFER_EVENTS, event, timestamp_ms=event.ts)
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    first = bool(services.redis.set(serving.offer_event_mark(offer_id, body.event), event.ts,
                                    nx=True, ex=EVENT_MARK_TTL_S))
    if first:
        pipe = services.redis.pipeline()
        pipe.hincrby(serving.promo_stats(offer.pid), body.event, 1)
        pipe.hincrby(serving.store_stats(offer.store_id), body.event, 1)
        pipe.hincrby(serving.totals(), body.event, 1)
        pipe.execute()
    return OfferEventPublic(offer_id=offer_id, event=body.event, ts=event.ts, counted=first)


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
