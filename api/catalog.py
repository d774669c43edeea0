"""The catalog as the API sees it: store metadata in Redis (there is no stores topic) and
products from the table view of ``stores_products``; which live promotions cover a product."""

from __future__ import annotations

import orjson
import redis

from api.models import ProductPublic, StoreIn, StorePublic
from api.tables import TableView
from instore import records as r
from instore import serving


def store_meta(rds: redis.Redis, store_id: str) -> StoreIn | None:
    raw = rds.get(serving.store_meta(store_id))
    if raw is None:
        return None
    try:
        return StoreIn.model_validate(orjson.loads(raw))
    except (ValueError, orjson.JSONDecodeError):
        return None


def store_ids(rds: redis.Redis, tables: TableView) -> list[str]:
    ids = set(rds.smembers(serving.stores_index()))  # type: ignore[arg-type]
    ids |= {p.store_id for p in tables.products_of()}
    return sorted(ids)


def live_count(rds: redis.Redis, store_id: str, now_ms: int) -> int:
    return int(rds.zcount(serving.store_live(store_id), now_ms - serving.LIVE_WINDOW_MS, "+inf"))


def store_public(rds: redis.Redis, tables: TableView, store_id: str,
                 product_count: int | None = None) -> StorePublic:
    meta = store_meta(rds, store_id)
    count = product_count if product_count is not None else len(tables.products_of(store_id))
    base = meta.model_dump() if meta is not None else {}
    return StorePublic(store_id=store_id, **base, products=count,
                       live_shoppers=live_count(rds, store_id, r.now_ms()))


def promoted_by(product: r.StoreProduct, promotions: list[r.Promotion], now_ms: int) -> list[str]:
    return [q.pid for q in promotions
            if q.active_at(now_ms)
            and (q.sku == product.sku or (q.sku is None and q.segment == product.segment))]


def product_public(product: r.StoreProduct, promotions: list[r.Promotion],
                   now_ms: int) -> ProductPublic:
    return ProductPublic(**product.model_dump(),
                         promoted_by=promoted_by(product, promotions, now_ms))
