"""Kiosks: a kiosk screen reports interactions, shows one-time check-in codes that a shopper
confirms from their phone, gets an Ably token for its own channel, and shows the offers (and
"show me where") of the shopper checked in at it."""

from __future__ import annotations

import secrets
from typing import Annotated, cast

import orjson
from fastapi import APIRouter, HTTPException, Path, status

from api.deps import Kiosk, ServicesDep
from api.models import (
    CheckinCodePublic,
    Ident,
    KioskInteractionIn,
    KioskInteractionPublic,
    TokenRequestPublic,
    Uid,
)
from api.publisher import PublishError
from api.routes.shoppers import offer_map
from api.wayfinding import WherePublic
from instore import records as r
from instore import serving
from instore import topics as t
from instore.channels import kiosk_channel

router = APIRouter(prefix="/kiosks", tags=["kiosks"])

StorePath = Annotated[Ident, Path(description="store id")]
KioskPath = Annotated[Ident, Path(description="kiosk id within the store")]
TOKEN_TTL_MS = 3600 * 1000


@router.post("/{store_id}/{kiosk_id}/interactions", response_model=KioskInteractionPublic,
             status_code=status.HTTP_201_CREATED)
def kiosk_interaction(store_id: StorePath, kiosk_id: KioskPath, body: KioskInteractionIn,
                      services: ServicesDep, _role: Kiosk) -> KioskInteractionPublic:
    """A view, tap, scan or check-out at a kiosk -> ``kiosk_interactions``. A check-in is not
    taken from the kiosk (anyone could type someone's uid): the kiosk shows a one-time code
    and the shopper confirms it from their own phone."""
    if body.action == "checkin":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="a check-in is confirmed from the shopper's phone: show a code "
            f"(POST /kiosks/{store_id}/{kiosk_id}/checkin-codes)",
        )
    record = r.KioskInteraction(store_id=store_id, kiosk_id=kiosk_id, uid=body.uid,
                                action=body.action, sku=body.sku, ts=r.now_ms())
    try:
        services.publisher.send(t.KIOSK_INTERACTIONS, record, timestamp_ms=record.ts)
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    return KioskInteractionPublic(store_id=store_id, kiosk_id=kiosk_id, action=record.action,
                                  ts=record.ts)


@router.post("/{store_id}/{kiosk_id}/ably-token", response_model=TokenRequestPublic)
async def kiosk_ably_token(store_id: StorePath, kiosk_id: KioskPath, services: ServicesDep,
                           _role: Kiosk) -> TokenRequestPublic:
    """An Ably TokenRequest for the kiosk's channel ``kiosk:{store_id}:{kiosk_id}``."""
    req = await services.ably.auth.create_token_request(
        token_params={"capability": {kiosk_channel(store_id, kiosk_id): ["subscribe", "history"]},
                      "client_id": kiosk_channel(store_id, kiosk_id), "ttl": TOKEN_TTL_MS})
    return TokenRequestPublic(**req.to_dict())


@router.post("/{store_id}/{kiosk_id}/checkin-codes", response_model=CheckinCodePublic,
             status_code=status.HTTP_201_CREATED)
def new_checkin_code(store_id: StorePath, kiosk_id: KioskPath, services: ServicesDep,
                     _role: Kiosk) -> CheckinCodePublic:
    """A one-time check-in code for this kiosk (six digits, two minutes): the kiosk shows it,
    the shopper sends it from their phone (``POST /shoppers/{uid}/checkin``)."""
    ttl = serving.CHECKIN_CODE_TTL_S
    for _ in range(20):
        code = f"{secrets.randbelow(10**6):06d}"
        key = serving.checkin_code(code)
        if services.redis.hsetnx(key, "kiosk_id", kiosk_id):
            services.redis.hset(key, "store_id", store_id)
            services.redis.expire(key, ttl)
            return CheckinCodePublic(code=code, expires_in_s=ttl)
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                        detail="no free check-in code: try again in a moment")


@router.get("/{store_id}/{kiosk_id}/checkin-codes/{code}", response_model=CheckinCodePublic)
def checkin_code_state(store_id: StorePath, kiosk_id: KioskPath, code: str,
                       services: ServicesDep, _role: Kiosk) -> CheckinCodePublic:
    """Whether the shopper confirmed this kiosk's code yet (the kiosk polls): ``waiting`` or
    ``confirmed`` with their uid; 404 once it expired (or for another kiosk's code)."""
    key = serving.checkin_code(code)
    held = cast(dict[str, str], services.redis.hgetall(key))
    if not held or held.get("store_id") != store_id or held.get("kiosk_id") != kiosk_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such check-in code here")
    ttl = max(0, int(services.redis.ttl(key)))
    uid = held.get("uid")
    return CheckinCodePublic(code=code, state="confirmed" if uid else "waiting", uid=uid,
                             expires_in_s=ttl)


ShopperPath = Annotated[Uid, Path(description="the shopper checked in at this kiosk")]


def _checked_in_here(services: ServicesDep, store_id: str, kiosk_id: str, uid: str) -> None:
    """404 unless the shopper is checked in at this kiosk (the push sink keeps that from
    ``kiosk_interactions``) and consents to offers at a kiosk."""
    here = services.redis.get(serving.checkin(uid))
    consent = services.tables.consent(uid)
    if (here != f"{store_id}:{kiosk_id}" or consent is None or not consent.opted_in
            or "kiosk" not in consent.channels):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="this shopper is not checked in at this kiosk")


def _offers_here(services: ServicesDep, store_id: str, uid: str) -> list[r.Offer]:
    now = r.now_ms()
    out = []
    for raw in services.redis.lrange(serving.offers_of(uid), 0, serving.LATEST_OFFERS_KEEP - 1):
        try:
            offer = r.validate(r.Offer, orjson.loads(raw))
        except (r.RecordError, orjson.JSONDecodeError):
            continue
        if offer.store_id == store_id and offer.expires_at > now:
            out.append(offer)
    return out


@router.get("/{store_id}/{kiosk_id}/shoppers/{uid}/offers")
def checked_in_offers(store_id: StorePath, kiosk_id: KioskPath, uid: ShopperPath,
                      services: ServicesDep, _role: Kiosk) -> list[dict]:
    """The live offers in this store of the shopper checked in at this kiosk, newest first
    (404 for anyone not checked in here): what the kiosk shows after greeting them."""
    _checked_in_here(services, store_id, kiosk_id, uid)
    return [o.model_dump() for o in _offers_here(services, store_id, uid)]


@router.get("/{store_id}/{kiosk_id}/shoppers/{uid}/offers/{offer_id}/where",
            response_model=WherePublic)
def checked_in_offer_where(store_id: StorePath, kiosk_id: KioskPath, uid: ShopperPath,
                           offer_id: Annotated[Ident, Path()], services: ServicesDep,
                           _role: Kiosk) -> WherePublic:
    """'Show me where' on the kiosk's screen: the floor map with the way from the shopper
    (standing at the kiosk) to the product of one of their offers here."""
    _checked_in_here(services, store_id, kiosk_id, uid)
    for offer in _offers_here(services, store_id, uid):
        if offer.offer_id == offer_id:
            return offer_map(services, offer)
    raise HTTPException(status.HTTP_404_NOT_FOUND,
                        detail="no such live offer for the shopper checked in here")
