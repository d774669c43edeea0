"""The seed demo's three generators, in their shape: positions with only uid/lat/lon/country
(no store, no ts: the Kafka timestamp stands in), stores' products, and segment promotions."""

from __future__ import annotations

import random
from collections.abc import Iterator

from instore.records import CustomerLocation, Promotion, StoreProduct
from producers.world import SEGMENTS, build_world


def seed_catalog(seed: int = 7) -> tuple[list[StoreProduct], list[Promotion]]:
    world = build_world(stores=3, products=200, promoted=0, seed=seed)
    promos = [
        Promotion(pid=f"seed-{seg}", sku=None, segment=seg, title=f"{pct}% off {seg}",
                  discount_pct=float(pct), radius_ft=100.0)
        for seg, pct in zip(SEGMENTS[:5], (10, 15, 20, 25, 30), strict=True)
    ]
    return world.products, promos


def seed_positions(n: int, seed: int = 7) -> Iterator[CustomerLocation]:
    """Shoppers wandering around the seed stores (store_id left out, as the seed demo did)."""
    rng = random.Random(seed)
    products, _ = seed_catalog(seed)
    for i in range(n):
        p = rng.choice(products)
        yield CustomerLocation(uid=f"seed-user-{rng.randint(1, 50):03d}",
                               latitude=p.latitude + rng.gauss(0, 0.0001),
                               longitude=p.longitude + rng.gauss(0, 0.0001),
                               country=p.country, ts=None, source="sim")
        if i % 1000 == 999:
            rng.seed(seed + i)
