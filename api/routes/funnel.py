"""Offers funnel (marketer, analyst): nearby -> sent -> delivered -> opened -> redeemed, per
promotion and per store, from the serving store's counters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

from api import catalog
from api.deps import MarketerOrAnalyst, ServicesDep
from api.funnel import funnel_of, funnels, hash_of, status_of
from api.models import Funnel, Ident
from instore import records as r
from instore import serving

router = APIRouter(prefix="/funnel", tags=["funnel"])


class PromotionFunnel(BaseModel):
    pid: str
    title: str | None
    status: str | None
    funnel: Funnel


class StoreFunnel(BaseModel):
    store_id: str
    funnel: Funnel


class Totals(BaseModel):
    counters: dict[str, int]
    dead_letters_by_reason: dict[str, int]
    funnel: Funnel


@router.get("/totals", response_model=Totals)
def totals(services: ServicesDep, _role: MarketerOrAnalyst) -> Totals:
    """Global counters (positions, nearby, offers, dead letters per reason, opened, redeemed)."""
    raw = hash_of(services.redis, serving.totals())
    counters = {k: int(v) for k, v in raw.items() if not k.startswith("dead:")}
    dead = {k.removeprefix("dead:"): int(v) for k, v in raw.items() if k.startswith("dead:")}
    as_funnel = dict(raw)
    as_funnel.setdefault("sent", raw.get("offers", "0"))
    return Totals(counters=counters, dead_letters_by_reason=dead, funnel=funnel_of(as_funnel))


@router.get("/promotions", response_model=list[PromotionFunnel])
def promotion_funnels(services: ServicesDep, _role: MarketerOrAnalyst) -> list[PromotionFunnel]:
    """The funnel of every current promotion."""
    now = r.now_ms()
    promos = sorted(services.tables.promotions.values(), key=lambda p: p.pid)
    stats = funnels(services.redis, [serving.promo_stats(p.pid) for p in promos])
    return [PromotionFunnel(pid=p.pid, title=p.title, status=status_of(p, now), funnel=f)
            for p, f in zip(promos, stats, strict=True)]


@router.get("/promotions/{pid}", response_model=PromotionFunnel)
def promotion_funnel(pid: Annotated[Ident, Path()], services: ServicesDep,
                     _role: MarketerOrAnalyst) -> PromotionFunnel:
    """One promotion's funnel (also for a withdrawn promotion whose counters remain)."""
    promo = services.tables.promotions.get(pid)
    counters = hash_of(services.redis, serving.promo_stats(pid))
    if promo is None and not counters:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no promotion {pid}")
    return PromotionFunnel(pid=pid, title=promo.title if promo else None,
                           status=status_of(promo, r.now_ms()) if promo else None,
                           funnel=funnel_of(counters))


@router.get("/stores", response_model=list[StoreFunnel])
def store_funnels(services: ServicesDep, _role: MarketerOrAnalyst) -> list[StoreFunnel]:
    ids = catalog.store_ids(services.redis, services.tables)
    stats = funnels(services.redis, [serving.store_stats(s) for s in ids])
    return [StoreFunnel(store_id=s, funnel=f) for s, f in zip(ids, stats, strict=True)]


@router.get("/stores/{store_id}", response_model=StoreFunnel)
def store_funnel(store_id: Annotated[Ident, Path()], services: ServicesDep,
                 _role: MarketerOrAnalyst) -> StoreFunnel:
    counters = hash_of(services.redis, serving.store_stats(store_id))
    if not counters and store_id not in catalog.store_ids(services.redis, services.tables):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no store {store_id}")
    return StoreFunnel(store_id=store_id, funnel=funnel_of(counters))
