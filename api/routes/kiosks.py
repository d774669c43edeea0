"""Kiosks: a kiosk screen reports interactions and gets an Ably token for its own channel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from api.deps import Kiosk, ServicesDep
from api.models import Ident, KioskInteractionIn, KioskInteractionPublic, TokenRequestPublic
from api.publisher import PublishError
from instore import records as r
from instore import topics as t

router = APIRouter(prefix="/kiosks", tags=["kiosks"])

StorePath = Annotated[Ident, Path(description="store id")]
KioskPath = Annotated[Ident, Path(description="kiosk id within the store")]
TOKEN_TTL_MS = 3600 * 1000


@router.post("/{store_id}/{kiosk_id}/interactions", response_model=KioskInteractionPublic,
             status_code=status.HTTP_201_CREATED)
def kiosk_interaction(store_id: StorePath, kiosk_id: KioskPath, body: KioskInteractionIn,
                      services: ServicesDep, _role: Kiosk) -> KioskInteractionPublic:
    """A check-in, view, tap, scan or check-out at a kiosk -> ``kiosk_interactions``."""
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
