"""Push: where the pages' Ably client should connect (the local hub or Ably itself)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep
from api.models import PushConfig

router = APIRouter(prefix="/push", tags=["push"])


@router.get("/config", response_model=PushConfig)
def push_config(services: ServicesDep) -> PushConfig:
    """Public: the pages use this to point the Ably JS client at the hub or at Ably."""
    s = services.settings
    if s.push_hub_local:
        # HTTPS when the hub serves it (TLS_CERT_FILE and TLS_KEY_FILE)
        return PushConfig(mode="hub", rest_host=s.host, port=s.hub_port,
                          tls=bool(s.uvicorn_tls()))
    tls = True if s.ably_tls is None else s.ably_tls
    return PushConfig(mode="ably", rest_host=s.ably_rest_host, port=s.ably_port, tls=tls)
