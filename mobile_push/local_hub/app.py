"""The local push hub: the small part of Ably's REST API the `ably` SDK uses here, plus a
Server-Sent Events stream per channel for browsers, and the phone and kiosk pages.

Routes (Ably's shapes, ``rest``): ``GET /time``, ``POST /keys/{keyName}/requestToken``,
``POST /channels/{name}/messages``, ``GET /channels/{name}/messages``,
``POST /keys/{keyName}/revokeTokens``; Ably's realtime protocol over WebSocket at ``/`` (see
``mobile_push.local_hub.realtime``: what ably-js and the Python SDK need to subscribe and
publish). Ours: ``GET /channels/{name}/stream?accessToken=..&rewind=N`` (``stream``: SSE; the
pages' fallback when ably-js cannot load), ``/health``, and the pages (``mobile_push.pages``:
``/phone``, ``/kiosk``, ``/config.json``).

Memory only: history and de-duplication ids live as long as the process (Ably keeps
de-duplication ids for two minutes, so the sink's redelivery window is covered). Revoking a
shopper's tokens (``clientId:<uid>``, what erasure does) also drops their channel's history at
once (Ably keeps un-persisted history for two minutes). Token revocations are also saved to
``<data_dir>/push-hub/revocations.json`` (``revocations``): tokens are self-contained and
outlive a restart, so their revocations must too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from instore.bodylimit import BodyLimit
from instore.ratelimit import RateLimiter
from instore.settings import Settings
from mobile_push.local_hub import rest, stream
from mobile_push.local_hub.realtime import RealtimeSession
from mobile_push.local_hub.revocations import load_revocations, revocations_file
from mobile_push.local_hub.state import Hub, HubContext, context
from mobile_push.local_hub.tokens import ApiKey, AuthError, TokenAuthority
from mobile_push.local_hub.wire import error_response
from mobile_push.pages import mount_pages

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, extra_keys: list[str] | None = None) -> FastAPI:
    """The hub for ``settings.ably_key`` (and ``extra_keys``), its revocations loaded."""
    keys = [ApiKey.parse(settings.ably_key)] + [ApiKey.parse(k) for k in (extra_keys or [])]
    authority = TokenAuthority(keys)
    ctx = HubContext(settings, Hub(), authority, revocations_file(settings))
    load_revocations(authority, ctx.revocations)

    app = FastAPI(
        title="instore push hub", lifespan=_lifespan(ctx, keys), docs_url=None, redoc_url=None
    )
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, max_bytes=settings.hub_max_body_bytes)  # 413 before auth
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["X-Ably-ErrorCode", "X-Ably-ErrorMessage"],
    )
    app.middleware("http")(_rate_limit(settings))
    app.exception_handler(AuthError)(_auth_error)
    app.include_router(rest.router)
    app.include_router(stream.router)
    app.add_api_route("/health", health)
    app.add_api_websocket_route("/", realtime)
    mount_pages(app, settings)
    return app


def _lifespan(
    ctx: HubContext, keys: list[ApiKey]
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """One log line when ready, a summary when stopped."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        s = ctx.settings
        log.info("push hub ready on %s:%s (keys: %s)", s.host, s.hub_port,
                 ", ".join(k.name for k in keys))
        yield
        st = ctx.hub.stats
        log.info(
            "push hub stopped: published=%d duplicates=%d fanout=%d dropped_subscribers=%d "
            "auth_failures=%d channels=%d",
            st.published, st.duplicates, st.fanout, st.dropped_subscribers, st.auth_failures,
            len(ctx.hub.channels),
        )

    return lifespan


Next = Callable[[Request], Awaitable[Response]]


def _rate_limit(settings: Settings) -> Callable[[Request, Next], Awaitable[Response]]:
    """Per client address: token requests, and failed authentications (a client whose budget
    of those is spent gets 429 for every request that presents a credential until it refills;
    health, time and the pages stay open)."""
    token_limit = RateLimiter(settings.hub_token_rate_per_min)
    failure_limit = RateLimiter(settings.hub_auth_failures_per_min)

    async def rate_limit(request: Request, call_next: Next) -> Response:
        client = request.client.host if request.client else "unknown"
        presents = "authorization" in request.headers or request.url.path.startswith("/keys/")
        if presents and failure_limit.exhausted(client):
            return error_response(AuthError(429, 42910, "too many failed authentications: try later"))
        if request.method == "POST" and request.url.path.endswith("/requestToken") \
                and not token_limit.allow(client):
            return error_response(AuthError(429, 42910, "too many token requests: try later"))
        response = await call_next(request)
        if response.status_code in (401, 403):
            failure_limit.allow(client)
        return response

    return rate_limit


async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
    if exc.status in (401, 403):
        context(request).hub.stats.auth_failures += 1
    return error_response(exc)


async def health(request: Request) -> dict[str, Any]:
    hub = context(request).hub
    s = hub.stats
    return {
        "ok": True,
        "channels": len(hub.channels),
        "published": s.published,
        "duplicates": s.duplicates,
        "subscribers": sum(len(c.subscribers) for c in hub.channels.values()),
        "connections": len(hub.subscribers),
        "realtime_connections": s.realtime_connections,
        "revoked_streams": s.revoked_streams,
    }


async def realtime(ws: WebSocket) -> None:
    ctx = context(ws)
    await RealtimeSession(ws, ctx.hub, ctx.authority).run()


def serve(settings: Settings, *, port: int | None = None) -> None:
    import uvicorn  # noqa: PLC0415

    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=port or settings.hub_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        **settings.uvicorn_tls(),  # type: ignore[arg-type]
    )
