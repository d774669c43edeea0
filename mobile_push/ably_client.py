"""What the phone and kiosk pages read from ``/config.json``: where their push comes from (the
local push hub or Ably). The client factories are ``instore.ably``'s."""

from __future__ import annotations

from typing import Any

from instore.ably import target
from instore.settings import Settings


def page_config(settings: Settings) -> dict[str, Any]:
    """What the phone and kiosk pages read from ``/config.json``."""
    where = target(settings)
    return {
        "api_url": f"{settings.public_scheme()}://{settings.host}:{settings.api_port}",
        "mode": where.mode,
        "hub_url": "" if where.mode == "hub" else None,
        "rewind": 20,
        "rest_host": where.rest_host if where.mode == "ably" else None,
        # ably-js (Realtime over WebSocket) in both modes: the hub speaks Ably's realtime
        # protocol on the page's own host and port. "sse" = the hub's Server-Sent Events
        # stream, which the pages also fall back to when ably-js is not installed.
        "transport": "ably-js",
        # Nothing secret: a kiosk is provisioned once with `/kiosk?...&key=<kiosk key>`, which
        # the page keeps in its own storage.
    }
