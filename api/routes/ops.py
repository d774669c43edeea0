"""Ops: liveness, readiness (broker, Redis, worker lag), Prometheus metrics, and a detailed
status for the ops role."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Ops, ServicesDep
from api.funnel import hash_of
from instore import health, serving

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _readiness(services: Any) -> dict[str, Any]:
    result = health.check(services.settings)
    result["checks"]["catalog_view"] = {"ok": services.tables.caught_up.is_set(),
                                        "detail": "caught up" if services.tables.caught_up.is_set()
                                        else "loading"}
    return health.summarize(result["checks"])


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: broker reachable with every topic, Redis answers, worker lag readable, the
    catalog view loaded. 503 otherwise. ``degraded``: a source topic's dead letters are over
    their threshold (data quality; still ready). Details are for the ops role (``/ops/status``)."""
    result = _readiness(services)
    body = {"ok": result["ok"], "degraded": result["degraded"],
            "checks": {k: v["ok"] for k, v in result["checks"].items()}}
    return JSONResponse(body, status_code=status.HTTP_200_OK if result["ok"]
                        else status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get("/ops/status")
def ops_status(services: ServicesDep, _role: Ops) -> dict[str, Any]:
    """Readiness with details (addresses, lag per topic) and the pipeline totals."""
    result = _readiness(services)
    result["totals"] = {k: int(v) for k, v in hash_of(services.redis, serving.totals()).items()}
    result["api_writes"] = dict(services.publisher.sent)
    return result


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(generate_latest(request.app.state.metrics_registry),
                    media_type=CONTENT_TYPE_LATEST)
