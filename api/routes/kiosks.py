"""Kiosks: a kiosk screen reports interactions, shows one-time check-in codes that a shopper
confirms from their phone, and gets an Ably token for its own channel."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from api.deps import Kiosk, ServicesDep
from api.models import (
    CheckinCodePublic,
    Ident,
    KioskInteractionIn,
    KioskInteractionPublic,
    TokenRequestPublic,
)
from api.publisher import PublishError
from instore import records as r
from instore import serving
from instore import topics as t

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
        token_params={"capability": {f"kiosk:{store_id}:{kiosk_id}": ["subscribe", "history"]},
                      "client_id": f"kiosk:{store_id}:{kiosk_id}", "ttl": TOKEN_TTL_MS})
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
    held = services.redis.hgetall(key)
    if not held or held.get("store_id") != store_id or held.get("kiosk_id") != kiosk_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such check-in code here")
    ttl = max(0, int(services.redis.ttl(key)))
    uid = held.get("uid")
    return CheckinCodePublic(code=code, state="confirmed" if uid else "waiting", uid=uid,
                             expires_in_s=ttl)
