"""Promotions (role marketer): create, update, withdraw, list, get -> ``products_promotions``.

A promotion targets a SKU in the catalog or a known segment; discount 1-90 %, radius
3-1000 ft, ``starts_at < ends_at``. Withdrawing writes a tombstone. Listing shows the schedule
status and the live funnel from the serving store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import ValidationError

from api.deps import Marketer, MarketerOrAnalyst, ServicesDep
from api.errors import unprocessable
from api.funnel import funnels, status_of
from api.models import Ident, PromotionCreate, PromotionPublic, PromotionUpdate, epoch_ms
from api.publisher import PublishError
from api.services import Services
from instore import records as r
from instore import serving
from instore import topics as t

log = logging.getLogger(__name__)
router = APIRouter(prefix="/promotions", tags=["promotions"])

PidPath = Annotated[Ident, Path(description="promotion id")]
CATALOG_WAIT_S = 10.0


def _in_catalog(services: Services, known: Callable[[], bool]) -> bool:
    """``known()``, asked again after the view has read the catalog topic to its end when it
    says no: a catalog another program wrote a moment ago is found, not refused."""
    if known():
        return True
    services.tables.sync(t.STORES_PRODUCTS, CATALOG_WAIT_S)
    return known()


def _check_target(services: Services, promo: r.Promotion) -> None:
    tables = services.tables
    if not tables.wait_caught_up(CATALOG_WAIT_S):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="the catalog is still loading from stores_products; retry")
    if promo.sku is not None:
        sku = promo.sku
        if not _in_catalog(services, lambda: tables.sku_known(sku)):
            unprocessable(["body", "sku"], f"SKU {sku} is not in the catalog (stores_products)")
    elif promo.segment is not None:
        segment = promo.segment
        if not _in_catalog(services, lambda: tables.segment_known(segment)):
            known = ", ".join(tables.segments()[:20]) or "none yet"
            unprocessable(["body", "segment"], f"unknown segment {segment!r} (known: {known})")


def _publish(services: Services, promo: r.Promotion) -> None:
    try:
        services.publisher.send(t.PRODUCTS_PROMOTIONS, promo)
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    services.tables.apply(t.PRODUCTS_PROMOTIONS, promo.pid, promo)


def public(services: Services, promos: list[r.Promotion]) -> list[PromotionPublic]:
    now = r.now_ms()
    stats = funnels(services.redis, [serving.promo_stats(p.pid) for p in promos])
    return [PromotionPublic(**p.model_dump(), status=status_of(p, now), stats=s)
            for p, s in zip(promos, stats, strict=True)]


def _record(data: dict[str, Any]) -> r.Promotion:
    data = dict(data)
    data["starts_at"] = epoch_ms(data.get("starts_at"))
    data["ends_at"] = epoch_ms(data.get("ends_at"))
    try:
        return r.Promotion.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=exc.errors(include_url=False, include_input=False,
                                              include_context=False)) from None


@router.post("", response_model=PromotionPublic, status_code=status.HTTP_201_CREATED)
def create_promotion(body: PromotionCreate, services: ServicesDep,
                     _role: Marketer) -> PromotionPublic:
    """Create a promotion. Shoppers near the product get offers within seconds."""
    pid = body.pid or f"promo-{uuid.uuid4().hex[:10]}"
    if pid in services.tables.promotions:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"promotion {pid} exists; PATCH /promotions/{pid} to change it")
    promo = _record(body.model_dump() | {"pid": pid})
    _check_target(services, promo)
    _publish(services, promo)
    log.info("promotion created pid=%s", pid)
    return public(services, [promo])[0]


@router.get("", response_model=list[PromotionPublic])
def list_promotions(services: ServicesDep, _role: MarketerOrAnalyst,
                    status_filter: Annotated[
                        str | None,
                        Query(alias="status", pattern="^(scheduled|active|expired)$")] = None,
                    ) -> list[PromotionPublic]:
    """Every promotion with its status (scheduled/active/expired) and live funnel."""
    promos = sorted(services.tables.promotions.values(), key=lambda p: p.pid)
    out = public(services, promos)
    return [p for p in out if status_filter is None or p.status == status_filter]


@router.get("/{pid}", response_model=PromotionPublic)
def get_promotion(pid: PidPath, services: ServicesDep,
                  _role: MarketerOrAnalyst) -> PromotionPublic:
    promo = services.tables.promotions.get(pid)
    if promo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no promotion {pid}")
    return public(services, [promo])[0]


@router.patch("/{pid}", response_model=PromotionPublic)
def update_promotion(pid: PidPath, body: PromotionUpdate, services: ServicesDep,
                     _role: Marketer) -> PromotionPublic:
    """Change some fields of a promotion; the result is validated as a whole."""
    current = services.tables.promotions.get(pid)
    if current is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no promotion {pid}")
    changes = body.model_dump(exclude_unset=True)
    if "sku" in changes and changes["sku"] is not None and "segment" not in changes:
        changes["segment"] = None
    merged = current.model_dump() | changes
    try:
        PromotionCreate.model_validate(merged)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=exc.errors(include_url=False, include_input=False,
                                              include_context=False)) from None
    promo = _record(merged)
    _check_target(services, promo)
    _publish(services, promo)
    log.info("promotion updated pid=%s", pid)
    return public(services, [promo])[0]


@router.delete("/{pid}", status_code=status.HTTP_204_NO_CONTENT)
def withdraw_promotion(pid: PidPath, services: ServicesDep, _role: Marketer) -> Response:
    """Withdraw a promotion: a tombstone in ``products_promotions``."""
    if pid not in services.tables.promotions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no promotion {pid}")
    try:
        services.publisher.send(t.PRODUCTS_PROMOTIONS, None, key=pid)
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    services.tables.apply(t.PRODUCTS_PROMOTIONS, pid, None)
    log.info("promotion withdrawn pid=%s", pid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
