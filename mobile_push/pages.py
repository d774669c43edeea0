"""The phone and kiosk pages (``static/``) and what they read from ``/config.json``: where their
push comes from (the local push hub or Ably; the client factories are ``instore.ably``'s).

The pages are the product's, the same in both modes; the process that serves them (today the
local push hub, ``mobile_push.local_hub.app``) mounts them with ``mount_pages``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from instore.ably import target
from instore.settings import Settings

STATIC = Path(__file__).parent / "static"


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


def pages_router(settings: Settings) -> APIRouter:
    """``/config.json``, ``/phone``, ``/kiosk``, and ``/`` (to the phone page)."""
    router = APIRouter()

    @router.get("/config.json")
    async def config() -> dict[str, Any]:
        return page_config(settings)

    @router.get("/phone", include_in_schema=False)
    async def phone() -> FileResponse:
        return FileResponse(STATIC / "phone.html")

    @router.get("/kiosk", include_in_schema=False)
    async def kiosk() -> FileResponse:
        return FileResponse(STATIC / "kiosk.html")

    @router.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/phone")

    return router


def mount_pages(app: FastAPI, settings: Settings) -> None:
    """The page routes and their scripts and styles under ``/static``."""
    app.include_router(pages_router(settings))
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
