"""Products (role marketer; analysts read) -> the compacted ``stores_products`` topic, one by
one or as a CSV file with a per-row error report."""

from __future__ import annotations

import csv
import io
import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, UploadFile, status
from pydantic import ValidationError

from api import catalog
from api.catalog import live_now
from api.deps import Marketer, MarketerOrAnalyst, ServicesDep
from api.errors import unprocessable
from api.models import BulkReport, Ident, ProductIn, ProductPublic, RowError, Segment
from api.publisher import PublishError
from api.services import Services
from instore import records as r
from instore import topics as t

log = logging.getLogger(__name__)
router = APIRouter(prefix="/products", tags=["catalog"])

StorePath = Annotated[Ident, Path(description="store id")]
SkuPath = Annotated[int, Path(ge=0, le=2**53, description="SKU")]
CSV_COLUMNS = ("sku", "store_id", "segment", "variant", "name", "latitude", "longitude", "country")
REQUIRED_COLUMNS = {"sku", "store_id", "segment", "name", "latitude", "longitude"}
MAX_CSV_BYTES = 20 * 1024 * 1024
BATCH = 2000


def _record(services: Services, body: ProductIn,
            countries: dict[str, str | None]) -> r.StoreProduct:
    country = body.country
    if country is None:
        if body.store_id not in countries:
            meta = catalog.store_meta(services.redis, body.store_id)
            countries[body.store_id] = meta.country if meta else None
        country = countries[body.store_id]
    return r.StoreProduct(**(body.model_dump() | {"country": country.upper() if country else None}))


def _publish(services: Services, products: list[r.StoreProduct]) -> None:
    try:
        services.publisher.send_many(t.STORES_PRODUCTS, [(p, None) for p in products])
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    for p in products:
        services.tables.apply(t.STORES_PRODUCTS, t.STORES_PRODUCTS.key_of(p) or "", p)


@router.post("", response_model=ProductPublic, status_code=status.HTTP_201_CREATED)
def put_product(body: ProductIn, services: ServicesDep, _role: Marketer) -> ProductPublic:
    """Create or replace one product (key ``store_id:sku``)."""
    product = _record(services, body, {})
    _publish(services, [product])
    return catalog.product_public(product, live_now(services))


@router.get("", response_model=list[ProductPublic])
def list_products(services: ServicesDep, _role: MarketerOrAnalyst,
                  store_id: Annotated[Ident | None, Query()] = None,
                  segment: Annotated[Segment | None, Query()] = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[ProductPublic]:
    live = live_now(services)
    return [catalog.product_public(p, live)
            for p in services.tables.products_of(store_id, segment, limit)]


@router.get("/segments", response_model=list[str])
def list_segments(services: ServicesDep, _role: MarketerOrAnalyst) -> list[str]:
    """Segments present in the catalog (a promotion may target one)."""
    return services.tables.segments()


@router.get("/{store_id}/{sku}", response_model=ProductPublic)
def get_product(store_id: StorePath, sku: SkuPath, services: ServicesDep,
                _role: MarketerOrAnalyst) -> ProductPublic:
    product = services.tables.product(store_id, sku)
    if product is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no product {sku} in {store_id}")
    return catalog.product_public(product, live_now(services))


@router.delete("/{store_id}/{sku}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(store_id: StorePath, sku: SkuPath, services: ServicesDep,
                   _role: Marketer) -> Response:
    """Remove a product from the catalog: a tombstone in ``stores_products``."""
    key = f"{store_id}:{sku}"
    if services.tables.product(store_id, sku) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no product {sku} in {store_id}")
    try:
        services.publisher.send(t.STORES_PRODUCTS, None, key=key)
    except PublishError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    services.tables.apply(t.STORES_PRODUCTS, key, None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _row_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "row"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@router.post("/bulk", response_model=BulkReport)
def bulk_products(file: UploadFile, services: ServicesDep, _role: Marketer) -> BulkReport:
    """Upload a CSV (header: sku,store_id,segment,variant,name,latitude,longitude,country;
    variant and country optional). Valid rows are written; the report lists every rejected
    row with its line number and reason."""
    raw = file.file.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            detail=f"CSV larger than {MAX_CSV_BYTES // (1024 * 1024)} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        unprocessable(["body", "file"], "the file is not UTF-8 text")
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = {h.strip() for h in (reader.fieldnames or [])}
    except csv.Error as exc:  # the header line itself cannot be read
        unprocessable(["body", "file"], f"unreadable CSV header: {exc}")
    missing = REQUIRED_COLUMNS - header
    if missing:
        unprocessable(["body", "file"], f"CSV header lacks: {', '.join(sorted(missing))}")
    errors: list[RowError] = []
    good: list[r.StoreProduct] = []
    countries: dict[str, str | None] = {}
    rows = 0
    try:
        for row in reader:
            rows += 1
            line = reader.line_num
            data = {(k or "").strip(): (v.strip() if isinstance(v, str) else v)
                    for k, v in row.items() if k is not None and k.strip() in CSV_COLUMNS}
            if None in row:
                errors.append(RowError(row=line, error="more fields than the header has"))
                continue
            data = {k: v for k, v in data.items() if v not in ("", None)}
            try:
                good.append(_record(services, ProductIn.model_validate(data), countries))
            except ValidationError as exc:
                errors.append(RowError(row=line, error=_row_error(exc)))
    except csv.Error as exc:
        errors.append(RowError(row=reader.line_num, error=f"unreadable CSV: {exc}"))
    for i in range(0, len(good), BATCH):
        _publish(services, good[i:i + BATCH])
    log.info("bulk catalog upload: %d rows, %d accepted, %d rejected", rows, len(good), len(errors))
    return BulkReport(rows=rows, accepted=len(good), rejected=len(errors), errors=errors[:1000])
