"""Analytics (analyst, marketer): the top 10 % of products by dwell time and by redemptions
over a sliding window, maintained by the analytics Faust agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.analytics import Metric, top_share, window_totals
from api.deps import MarketerOrAnalyst, ServicesDep
from api.models import Ident
from instore import records as r
from instore import serving

router = APIRouter(prefix="/analytics", tags=["analytics"])


class TopItem(BaseModel):
    store_id: str
    sku: int
    name: str | None
    value: float


class TopProducts(BaseModel):
    metric: Metric
    window_s: int
    products_seen: int
    top: list[TopItem]


@router.get("/top-products", response_model=TopProducts)
def top_products(services: ServicesDep, _role: MarketerOrAnalyst,
                 metric: Annotated[Metric, Query(alias="by")] = "dwell",
                 window_s: Annotated[int, Query(ge=60, le=serving.ANALYTICS_WINDOW_S * 24)] = 3600,
                 store_id: Annotated[Ident | None, Query()] = None,
                 share: Annotated[float, Query(gt=0, le=1)] = 0.10) -> TopProducts:
    """Top products (default the top 10 %) by dwell seconds or redemptions in the window."""
    totals = window_totals(services.redis, metric, window_s, r.now_ms())
    if store_id is not None:
        totals = type(totals)({k: v for k, v in totals.items()
                               if k.rsplit(":", 1)[0] == store_id})
    top = []
    for member, value in top_share(totals, share):
        sid, _, sku = member.rpartition(":")
        if not sku.isdigit():
            continue
        product = services.tables.product(sid, int(sku))
        top.append(TopItem(store_id=sid, sku=int(sku), name=product.name if product else None,
                           value=round(value, 3)))
    return TopProducts(metric=metric, window_s=window_s, products_seen=len(totals), top=top)
