"""The catalog as the API sees it: store metadata in Redis (there is no stores topic) and
products from the table view of ``stores_products``; which live promotions cover a product."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import cast

import orjson
import redis

from api.models import ProductPublic, StoreIn, StorePublic
from api.services import Services
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
    ids = cast(set[str], rds.smembers(serving.stores_index()))
    ids |= set(tables.store_counts())
    return sorted(ids)


def live_count(rds: redis.Redis, store_id: str, now_ms: int) -> int:
    return int(rds.zcount(serving.store_live(store_id), now_ms - serving.LIVE_WINDOW_MS, "+inf"))


def store_public(rds: redis.Redis, tables: TableView, store_id: str,
                 product_count: int | None = None) -> StorePublic:
    meta = store_meta(rds, store_id)
    count = product_count if product_count is not None else tables.store_counts().get(store_id, 0)
    base = meta.model_dump() if meta is not None else {}
    return StorePublic(store_id=store_id, **base, products=count,
                       live_shoppers=live_count(rds, store_id, r.now_ms()))


class LivePromotions:
    """The promotions live at one moment, indexed by SKU and by segment (one pass per request,
    so listing a large catalog stays linear)."""

    def __init__(self, promotions: Iterable[r.Promotion], now_ms: int) -> None:
        self.by_sku: dict[int, list[str]] = defaultdict(list)
        self.by_segment: dict[str, list[str]] = defaultdict(list)
        for q in sorted(promotions, key=lambda q: q.pid):
            if not q.active_at(now_ms):
                continue
            if q.sku is not None:
                self.by_sku[q.sku].append(q.pid)
            elif q.segment is not None:
                self.by_segment[q.segment].append(q.pid)

    def on(self, product: r.StoreProduct) -> list[str]:
        return self.by_sku.get(product.sku, []) + self.by_segment.get(product.segment, [])


def product_public(product: r.StoreProduct, live: LivePromotions) -> ProductPublic:
    return ProductPublic(**product.model_dump(), promoted_by=live.on(product))


def live_now(services: Services) -> LivePromotions:
    return LivePromotions(list(services.tables.promotions.values()), r.now_ms())
