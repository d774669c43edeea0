"""Stores (role marketer; analysts read): anchor, geofence, country, and the live floor map."""

from __future__ import annotations

import math
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from api import catalog
from api.catalog import live_now
from api.deps import Marketer, MarketerOrAnalyst, ServicesDep
from api.models import FloorPublic, Ident, ShopperDot, StoreIn, StorePublic
from instore import records as r
from instore import serving

router = APIRouter(prefix="/stores", tags=["catalog"])
StorePath = Annotated[Ident, Path(description="store id")]
FLOOR_PRODUCTS_MAX = 3000


@router.get("", response_model=list[StorePublic])
def list_stores(services: ServicesDep, _role: MarketerOrAnalyst) -> list[StorePublic]:
    """Stores with metadata or products, with product and live shopper counts."""
    counts = services.tables.store_counts()
    return [catalog.store_public(services.redis, services.tables, sid, counts.get(sid, 0))
            for sid in catalog.store_ids(services.redis, services.tables)]


@router.put("/{store_id}", response_model=StorePublic)
def put_store(store_id: StorePath, body: StoreIn, services: ServicesDep,
              _role: Marketer) -> StorePublic:
    """Create or replace a store's metadata (anchor lat/lon, geofence radius, country)."""
    body.country = body.country.upper()
    pipe = services.redis.pipeline()
    pipe.set(serving.store_meta(store_id), orjson.dumps(body.model_dump()))
    pipe.sadd(serving.stores_index(), store_id)
    pipe.execute()
    return catalog.store_public(services.redis, services.tables, store_id)


@router.get("/{store_id}", response_model=StorePublic)
def get_store(store_id: StorePath, services: ServicesDep,
              _role: MarketerOrAnalyst) -> StorePublic:
    if store_id not in catalog.store_ids(services.redis, services.tables):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no store {store_id}")
    return catalog.store_public(services.redis, services.tables, store_id)


@router.delete("/{store_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_store(store_id: StorePath, services: ServicesDep, _role: Marketer) -> Response:
    """Remove a store's metadata (its products stay until deleted from the catalog)."""
    if not services.redis.delete(serving.store_meta(store_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no metadata for store {store_id}")
    services.redis.srem(serving.stores_index(), store_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{store_id}/floor", response_model=FloorPublic)
def store_floor(store_id: StorePath, services: ServicesDep, _role: MarketerOrAnalyst,
                window_s: Annotated[int, Query(ge=1, le=3600)] = 60) -> FloorPublic:
    """The floor map: products (with the live promotions on each; in a store of more than
    3,000 products every promoted one and an even sample of the rest) and anonymous shopper
    dots seen in the last ``window_s`` seconds."""
    now = r.now_ms()
    live = live_now(services)
    every = [catalog.product_public(p, live) for p in services.tables.products_of(store_id)]
    promoted = [p for p in every if p.promoted_by]
    others = [p for p in every if not p.promoted_by]
    room = max(0, FLOOR_PRODUCTS_MAX - len(promoted))
    if len(others) > room:  # a huge store: every promoted shelf, an even sample of the rest
        others = others[:: math.ceil(len(others) / room)] if room else []
    products = promoted + others
    dots = []
    for raw in services.redis.hvals(serving.store_positions(store_id)):
        try:
            pos = orjson.loads(raw)
            dot = ShopperDot(latitude=pos["latitude"], longitude=pos["longitude"],
                             age_ms=max(0, now - int(pos["ts"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if dot.age_ms <= window_s * 1000:
            dots.append(dot)
    store = catalog.store_public(services.redis, services.tables, store_id, len(every))
    return FloorPublic(store=store, products=products, shoppers=dots)
