"""The benchmark world (DESIGN.md): stores with products on shelves and promoted SKUs.

``S`` stores, each a 100 m x 60 m floor with double-sided shelves every 3 m; ``P`` products
per store on the shelves; ``K`` promoted SKUs (by SKU, chain-wide, so each is promoted in
every store), radii drawn from 10/25/50/100 ft. Same seed -> same world.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from instore.geo import LocalFrame
from instore.records import Promotion, StoreProduct

FLOOR_W_M = 100.0
FLOOR_D_M = 60.0
SHELF_PITCH_M = 3.0
SHELF_MARGIN_M = 4.0  # cross-aisles at the front and back of the floor
RADII_FT = (10.0, 25.0, 50.0, 100.0)
SEGMENTS = (
    "coffee", "tea", "bakery", "dairy", "produce", "snacks", "beverages", "frozen", "pantry",
    "household", "beauty", "baby", "pet", "wine", "beer", "deli", "seafood", "meat", "health",
    "electronics",
)
# Store anchors: real cities, so lat/lon are plausible; more stores wrap with an offset.
ANCHORS = (
    ("GB", 51.5072, -0.1276), ("GB", 53.4808, -2.2426), ("GB", 52.4862, -1.8904),
    ("GB", 55.9533, -3.1883), ("GB", 51.4545, -2.5879), ("GB", 53.8008, -1.5491),
    ("GB", 54.9783, -1.6178), ("GB", 52.9548, -1.1581), ("GB", 50.9097, -1.4044),
    ("GB", 51.7520, -1.2577),
)


def shelf_xs() -> list[float]:
    """x of each double-sided shelf's centre line (aisles run between them)."""
    n = int((FLOOR_W_M - SHELF_PITCH_M) // SHELF_PITCH_M)
    return [SHELF_PITCH_M * (i + 1) for i in range(n)]


def aisle_xs() -> list[float]:
    return [x + SHELF_PITCH_M / 2 for x in [0.0, *shelf_xs()] if x + SHELF_PITCH_M / 2 < FLOOR_W_M]


@dataclass
class Store:
    store_id: str
    country: str
    frame: LocalFrame  # x east, y north, metres from the floor's south-west corner

    def latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.frame.to_latlon(x, y)


@dataclass
class World:
    stores: list[Store]
    products: list[StoreProduct]
    promotions: list[Promotion]
    product_xy: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)

    @property
    def promoted_skus(self) -> list[int]:
        return [q.sku for q in self.promotions if q.sku is not None]


def segment_of(sku: int) -> str:
    return SEGMENTS[sku % len(SEGMENTS)]


def make_stores(n: int) -> list[Store]:
    stores = []
    for i in range(n):
        country, lat, lon = ANCHORS[i % len(ANCHORS)]
        lap = i // len(ANCHORS)
        lat += 0.05 * lap  # ~5.5 km apart per lap: distinct stores in the same city
        stores.append(Store(f"store-{i + 1:03d}", country, LocalFrame(lat, lon)))
    return stores


def build_world(stores: int = 10, products: int = 10_000, promoted: int = 200, seed: int = 7,
                segment_promotions: int = 0, start_ms: int | None = None) -> World:
    """Lay ``products`` SKUs on each store's shelves (shuffled per store) and promote ``promoted``.

    Promotions are open-ended unless ``start_ms`` is given (then they start then and last 30
    days). ``segment_promotions`` adds that many segment-wide promotions (small radius).
    """
    if products < promoted:
        msg = f"cannot promote {promoted} of {products} products"
        raise ValueError(msg)
    rng = random.Random(seed)
    all_stores = make_stores(stores)
    xs = shelf_xs()
    per_face = math.ceil(products / (len(xs) * 2))
    usable = FLOOR_D_M - 2 * SHELF_MARGIN_M
    slots = [
        (x + side * 0.4, SHELF_MARGIN_M + usable * (j + 0.5) / per_face)
        for x in xs for side in (-1, 1) for j in range(per_face)
    ]
    out_products: list[StoreProduct] = []
    product_xy: dict[tuple[str, int], tuple[float, float]] = {}
    for store in all_stores:
        order = list(range(1, products + 1))
        rng.shuffle(order)
        for sku, (x, y) in zip(order, slots, strict=False):
            lat, lon = store.latlon(x, y)
            out_products.append(StoreProduct(
                sku=sku, store_id=store.store_id, segment=segment_of(sku), variant=None,
                name=f"{segment_of(sku).title()} item {sku}", latitude=lat, longitude=lon,
                country=store.country,
            ))
            product_xy[(store.store_id, sku)] = (x, y)
    promoted_skus = rng.sample(range(1, products + 1), promoted)
    ends = None if start_ms is None else start_ms + 30 * 86_400_000
    promos = [
        Promotion(pid=f"promo-{sku}", sku=sku, segment=None,
                  title=f"{rng.choice((10, 15, 20, 25, 30))}% off {segment_of(sku)} item {sku}",
                  discount_pct=float(rng.choice((10, 15, 20, 25, 30))),
                  radius_ft=rng.choice(RADII_FT), starts_at=start_ms, ends_at=ends)
        for sku in promoted_skus
    ]
    for seg in SEGMENTS[:segment_promotions]:
        promos.append(Promotion(pid=f"promo-seg-{seg}", sku=None, segment=seg,
                                title=f"5% off all {seg}", discount_pct=5.0, radius_ft=10.0,
                                starts_at=start_ms, ends_at=ends))
    for q in promos:  # titles say the discount they give
        if q.sku is not None:
            q.title = f"{int(q.discount_pct)}% off {segment_of(q.sku)} item {q.sku}"
    return World(all_stores, out_products, promos, product_xy)
