"""Analytics (analyst, marketer): the top 10 % of products by dwell time and by redemptions
over a sliding window, and the products bought together (redeemed by one shopper within one
visit), maintained by the analytics Faust agents."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from api import catalog
from api.analytics import Metric, bucket_totals, top_pairs, top_share, window_totals
from api.deps import Analyst, MarketerOrAnalyst, ServicesDep
from api.errors import unprocessable
from api.models import Ident, Sku
from api.services import Services
from instore import records as r
from instore import serving

log = logging.getLogger(__name__)
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


class PairProduct(BaseModel):
    sku: int
    name: str | None


class ProductPair(BaseModel):
    store_id: str
    products: list[PairProduct] = Field(
        description="the two products (the queried SKU first when one was given)")
    count: int = Field(description="shoppers who redeemed both within one basket window")


class BoughtTogether(BaseModel):
    window_minutes: int = Field(description="the sliding window the counts cover")
    basket_window_s: int = Field(description="how far apart two redemptions of one shopper may "
                                             "be to count as bought together (one visit)")
    store_id: str | None
    sku: int | None
    pairs_seen: int = Field(description="pairs matching the filters in the window")
    pairs: list[ProductPair]


@router.get("/bought-together", response_model=BoughtTogether)
def bought_together(services: ServicesDep, _role: MarketerOrAnalyst,
                    store_id: Annotated[Ident | None, Query()] = None,
                    sku: Annotated[Sku | None, Query(description="only pairs with this SKU")] = None,
                    window_minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60,
                    limit: Annotated[int, Query(ge=1, le=100)] = 10) -> BoughtTogether:
    """Pairs of products one shopper redeemed within one visit, most shoppers first; each
    shopper counts once per pair, however often an event is redelivered."""
    totals = bucket_totals(services.redis, serving.analytics_pairs, window_minutes * 60,
                           r.now_ms())
    seen, rows = top_pairs(totals, store_id=store_id, sku=sku, limit=limit)
    pairs = []
    for sid, low, high, count in rows:
        skus = (high, low) if sku == high else (low, high)
        products = []
        for one in skus:
            product = services.tables.product(sid, one)
            products.append(PairProduct(sku=one, name=product.name if product else None))
        pairs.append(ProductPair(store_id=sid, products=products, count=count))
    return BoughtTogether(window_minutes=window_minutes,
                          basket_window_s=services.settings.basket_window_s, store_id=store_id,
                          sku=sku, pairs_seen=seen, pairs=pairs)


class ArchiveQuery(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000, description="One SELECT over the "
                     "archive's views (positions, kiosk_interactions, nearby, offers, "
                     "offer_events, dead_letters, products, promotions)")
    max_rows: int = Field(default=1000, ge=1, le=100_000)


class ArchiveAnswer(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[object]]
    truncated: bool = Field(description="more rows than max_rows matched")


@router.post("/sql", response_model=ArchiveAnswer)
def archive_sql(body: ArchiveQuery, services: ServicesDep, _role: Analyst) -> ArchiveAnswer:
    """Run one read-only SELECT over the archive (cold storage) with DuckDB (analyst role).
    A refused or failing query answers 400 with DuckDB's message."""
    from instore.archive import ArchiveQueryError, query  # noqa: PLC0415

    try:
        result = query(services.settings.archive_location, body.sql, max_rows=body.max_rows,
                       timeout_s=30.0)
    except ArchiveQueryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    return ArchiveAnswer(columns=result.columns, types=result.types, rows=result.rows,
                         truncated=result.truncated)


class TimeSeries(BaseModel):
    key: str = Field(description="the promotion id, the store id, or 'all'")
    label: str = Field(description="what a marketer calls it: the promotion's title, the "
                                    "store's name")
    total: int
    counts: list[int] = Field(description="one count per bucket, from 'start'")


class TimeSeriesAnswer(BaseModel):
    metric: Literal["offers", "redemptions"]
    bucket: Literal["minute", "hour"]
    start: int = Field(description="the first bucket's start (epoch ms)")
    bucket_ms: int
    buckets: int
    series: list[TimeSeries] = Field(description="the largest ten, largest first")
    archive_delay_s: float = Field(description="the archiver writes every ARCHIVE_FLUSH_S: "
                                               "the latest buckets fill in this much later")


@router.get("/timeseries", response_model=TimeSeriesAnswer)
def offers_timeseries(
        services: ServicesDep, _role: MarketerOrAnalyst,
        metric: Annotated[Literal["offers", "redemptions"], Query()] = "offers",
        bucket: Annotated[Literal["minute", "hour"], Query()] = "minute",
        start: Annotated[int | None, Query(alias="from", ge=0, le=r.MAX_EPOCH_MS,
                                           description="epoch ms; default: 'to' minus an "
                                           "hour")] = None,
        end: Annotated[int | None, Query(alias="to", ge=0, le=r.MAX_EPOCH_MS,
                                         description="epoch ms; default: now")] = None,
        by: Annotated[Literal["total", "promotion", "store"], Query()] = "total",
        pid: Annotated[Ident | None, Query()] = None,
        store_id: Annotated[Ident | None, Query()] = None) -> TimeSeriesAnswer:
    """Offers made, or offers redeemed (once per offer, at its first ``redeemed`` event), per
    minute or hour, in total or per promotion or per store, from the archive (DuckDB). The
    archive, not Redis: it holds any date range and is what the daily reports count from, so a
    chart and a report agree; the price is the archiver's flush interval (ARCHIVE_FLUSH_S,
    ``archive_delay_s``): the latest minute shows up that late."""
    from api.timeseries import BUCKET_MS, RangeError, timeseries  # noqa: PLC0415

    end_ms = end if end is not None else r.now_ms()
    start_ms = start if start is not None else end_ms - 3_600_000
    try:
        first, n, rows = timeseries(services.settings.archive_location, metric, bucket,
                                    start_ms, end_ms, by=by, pid=pid, store_id=store_id)
    except RangeError as exc:
        unprocessable(["query", "from"], str(exc))
    except duckdb_errors() as exc:
        log.warning("timeseries: the archive could not be read: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail=f"the archive could not be read: {exc}") from None
    series = [TimeSeries(key=s.key, label=_label(services, by, s.key, s.title), total=s.total,
                         counts=s.points) for s in rows]
    return TimeSeriesAnswer(metric=metric, bucket=bucket, start=first, bucket_ms=BUCKET_MS[bucket],
                            buckets=n, series=series,
                            archive_delay_s=services.settings.archive_flush_s)


def duckdb_errors() -> tuple[type[BaseException], ...]:
    import duckdb  # noqa: PLC0415

    return (duckdb.Error, OSError)


def _label(services: Services, by: str, key: str, archived_title: str | None) -> str:
    if by == "promotion":
        promo = services.tables.promotions.get(key)
        return (promo.title if promo else archived_title) or key
    if by == "store":
        meta = catalog.store_meta(services.redis, key)
        return meta.name if meta and meta.name else key
    return "all offers"
