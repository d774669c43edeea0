"""The FastAPI app: ``create_app(settings)`` builds it; ``app`` is the one from the environment.

Run it with ``instore api serve`` (``instore up`` starts it). OpenAPI docs at ``/docs``, the
marketer dashboard at ``/dashboard``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import redis
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api import ratelimit
from api.metrics import make_registry
from api.publisher import Publisher
from api.routes import (
    analytics,
    funnel,
    kiosks,
    ksql,
    lineage,
    offers,
    ops,
    products,
    promotions,
    push,
    redemptions,
    shoppers,
    stores,
)
from api.services import Services, ably_client
from api.tables import TableView
from instore.bodylimit import BodyLimit
from instore.settings import Settings, get_settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SWAGGER_DIR = STATIC / "vendor" / "swagger-ui"


def allowed_origins(settings: Settings) -> list[str]:
    hosts = {settings.host}
    if settings.host in ("127.0.0.1", "localhost"):
        hosts |= {"127.0.0.1", "localhost"}
    scheme = settings.public_scheme()  # with TLS the pages are https: so are their origins
    return sorted(f"{scheme}://{h}:{port}" for h in hosts
                  for port in (settings.hub_port, settings.api_port))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="instore API",
        version="0.1.0",
        description="Promotions, catalog, consent and erasure, offers and funnel, analytics and "
        "ops for in-store personalization on Kafka. Roles authenticate with `X-API-Key`; "
        "shoppers with `Authorization: Bearer <shopper token>`.",
        lifespan=_lifespan(settings),
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(CORSMiddleware, allow_origins=allowed_origins(settings),
                       allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                       allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    ratelimit.install(app, settings)  # token routes and credential guessing (429)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)  # 413 before auth
    for module in (promotions, stores, products, funnel, offers, analytics, shoppers, kiosks,
                   push, ops, lineage, ksql, redemptions):
        app.include_router(module.router)
    _count_requests(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _pages(app)
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start: the services every route uses (Redis, the publisher, the table views, Ably) on
    ``app.state.services``; stop: close them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _ = settings.shopper_secret, settings.ably_key  # refuse to start without them
        tables = TableView(settings)
        tables.start()
        services = Services(
            settings=settings,
            redis=redis.Redis.from_url(settings.redis_address, decode_responses=True,
                                       socket_timeout=5, socket_connect_timeout=3),
            publisher=Publisher(settings),
            tables=tables,
            ably=ably_client(settings),
        )
        app.state.services = services
        log.info("api started (kafka %s, push %s)", settings.bootstrap_servers,
                 "hub" if settings.push_hub_local else "ably")
        try:
            yield
        finally:
            tables.stop()
            services.publisher.close()
            services.redis.close()
            await services.ably.close()
            log.info("api stopped")

    return lifespan


def _count_requests(app: FastAPI) -> None:
    """The Prometheus registry (``app.state.metrics_registry``) and a middleware counting
    requests by method, route template and status."""
    registry, requests = make_registry(lambda: getattr(app.state, "services", None))
    app.state.metrics_registry = registry

    @app.middleware("http")
    async def count_requests(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        requests.labels(request.method, template, str(response.status_code)).inc()
        return response


def _pages(app: FastAPI) -> None:
    """The pages outside the API schema: the docs, the dashboard and the ops view."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI, from api/static/vendor (make setup) so it works offline."""
        local = SWAGGER_DIR / "swagger-ui-bundle.js"
        if not local.exists():
            return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} docs")
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} docs",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The marketer dashboard (its data calls need the marketer key)."""
        return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})

    @app.get("/ops", include_in_schema=False)
    def ops_view() -> FileResponse:
        """The ops view: checks, data quality, pipeline totals (its data call needs the ops key)."""
        return FileResponse(STATIC / "ops.html", headers={"Cache-Control": "no-cache"})


app = create_app()
