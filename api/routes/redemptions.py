"""Redemptions (role cashier): the till scans or types the code an offer shows on the
shopper's phone; the first scan redeems the offer, every later one is refused.

The code (api/redemption.py) is a keyed hash of the offer id: the till needs nothing else,
and learns nothing about the shopper (no uid, no name). The code is a bearer coupon: whoever
shows it at the till redeems it, once; it is shown only on the shopper's own phone, behind
their token (``GET /shoppers/{uid}/offers/{offer_id}/code``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import cast

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from api import redemption
from api.deps import Cashier, ServicesDep
from api.errors import unprocessable
from api.models import Ident, Strict
from api.routes.offers import load_offer, record_event
from instore import records as r
from instore import serving

log = logging.getLogger(__name__)
router = APIRouter(prefix="/redemptions", tags=["redemptions"])


class RedemptionIn(Strict):
    code: str = Field(min_length=1, max_length=40,
                      description="the code under the offer's QR code (dashes, spaces and "
                      "case do not matter), or what the scanner read")
    store_id: Ident = Field(description="the store of this till")


class RedemptionPublic(BaseModel):
    offer_id: str
    store_id: str
    title: str
    discount_pct: float
    sku: int
    product: str | None = Field(description="the product's name in the catalog")
    redeemed_at: int


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC on %d %b")


@router.post("", response_model=RedemptionPublic, status_code=status.HTTP_201_CREATED)
def redeem(body: RedemptionIn, services: ServicesDep, _role: Cashier) -> RedemptionPublic:
    """Redeem the offer whose code the shopper shows: ``redeemed`` goes to ``offer_events``
    (funnel, analytics and archive count it) and the answer names the offer for the till.
    Already redeemed: 409; expired: 410; a code that is no offer's: 404 (422 when it cannot
    be a code); an offer of another store: 409."""
    code = redemption.normalize(body.code)
    if code is None:
        unprocessable(["body", "code"], f"this is not a redemption code: it has "
                      f"{redemption.LENGTH} letters and digits, as printed under the QR code")
    key = serving.redeem_code(code)
    held = cast(dict[str, str], services.redis.hgetall(key))
    offer_id = held.get("offer_id")
    secret = services.settings.shopper_secret
    if not offer_id or not redemption.verifies(secret, offer_id, code):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="no offer has this code: check it was typed right")
    if held.get("store_id") != body.store_id:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="this offer is for another store: it cannot be redeemed here")
    if held.get("redeemed_at"):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="already redeemed at "
                            f"{_at(int(held['redeemed_at']))}: it cannot be redeemed twice")
    now = r.now_ms()
    if now >= int(held.get("expires_at") or 0):
        raise HTTPException(status.HTTP_410_GONE,
                            detail=f"this offer expired at {_at(int(held.get('expires_at') or 0))}")
    offer = load_offer(services, offer_id)
    if offer is None:
        raise HTTPException(status.HTTP_410_GONE, detail="this offer is no longer available")
    if not services.redis.hsetnx(key, "redeemed_at", now):  # two tills at once: one wins
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="already redeemed: it cannot be redeemed twice")
    try:
        event = record_event(services, offer, "redeemed")
    except HTTPException:
        services.redis.hdel(key, "redeemed_at")  # not recorded: the code stays redeemable
        raise
    services.redis.hset(key, "redeemed_at", event.ts)  # the time offer_events has
    product = services.tables.product(offer.store_id, offer.sku)
    log.info("offer redeemed at a till")
    return RedemptionPublic(offer_id=offer.offer_id, store_id=offer.store_id, title=offer.title,
                            discount_pct=offer.discount_pct, sku=offer.sku,
                            product=product.name if product is not None else None,
                            redeemed_at=event.ts)
