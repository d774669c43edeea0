"""Simulated shoppers walking a store's aisles and stopping at shelves.

Each shopper enters at the front, walks the front cross-aisle to an aisle, walks up the aisle to
a shelf spot (often a promoted product), stops there 5-60 s, and moves on, reporting positions
at ``hz`` with ~0.3 m of noise. Same seed -> same walks. Positions carry simulation time; the
caller decides whether to pace them in real time.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from instore.records import CustomerLocation
from producers.world import FLOOR_D_M, SHELF_MARGIN_M, Store, World, aisle_xs

WALK_SPEED_MPS = 1.4
FRONT_Y = SHELF_MARGIN_M / 2


@dataclass
class Leg:
    x0: float
    y0: float
    x1: float
    y1: float
    t0: float  # seconds from the shopper's start
    t1: float


def _plan(rng: random.Random, world: World, store: Store, visits: int,
          promoted_bias: float, start_anywhere: bool = False) -> list[Leg]:
    aisles = aisle_xs()
    promoted = world.promoted_skus
    legs: list[Leg] = []
    x, y, t = aisles[0], FRONT_Y, 0.0
    if start_anywhere:  # already in the store (demo: offers show up sooner)
        x = rng.choice(aisles)
        y = rng.uniform(SHELF_MARGIN_M, FLOOR_D_M - SHELF_MARGIN_M)

    def walk(nx: float, ny: float) -> None:
        nonlocal x, y, t
        d = math.hypot(nx - x, ny - y)
        if d > 0:
            dt = d / (WALK_SPEED_MPS * rng.uniform(0.85, 1.15))
            legs.append(Leg(x, y, nx, ny, t, t + dt))
            x, y, t = nx, ny, t + dt

    def stop(seconds: float) -> None:
        nonlocal t
        legs.append(Leg(x, y, x, y, t, t + seconds))
        t += seconds

    for _ in range(visits):
        if promoted and rng.random() < promoted_bias:
            sku = rng.choice(promoted)
            px, py = world.product_xy.get((store.store_id, sku), (rng.choice(aisles), FLOOR_D_M / 2))
            ax = min(aisles, key=lambda a: abs(a - px))
            ty = py
        else:
            ax = rng.choice(aisles)
            ty = rng.uniform(SHELF_MARGIN_M, FLOOR_D_M - SHELF_MARGIN_M)
        if abs(ax - x) > 0.01:  # change aisle through the front cross-aisle
            walk(x, FRONT_Y)
            walk(ax, FRONT_Y)
        walk(ax, ty)
        stop(rng.uniform(5.0, 60.0))
    walk(x, FRONT_Y)
    walk(aisles[0], FRONT_Y)
    return legs


def walk_positions(world: World, *, shoppers: int, hz: float = 2.0, seed: int = 7,
                   start_ms: int = 0, visits: int = 6, promoted_bias: float = 0.6,
                   stagger_s: float = 10.0, noise_m: float = 0.3,
                   uid_prefix: str = "shopper",
                   start_anywhere: bool = False) -> Iterator[CustomerLocation]:
    """Every shopper's positions, merged in time order (ts in ms from ``start_ms``)."""
    rng = random.Random(seed)
    heap: list[tuple[int, int, int]] = []
    plans = []
    for i in range(shoppers):
        store = world.stores[i % len(world.stores)]
        legs = _plan(rng, world, store, visits, promoted_bias, start_anywhere)
        offset = rng.uniform(0, stagger_s)
        plans.append((store, legs, offset, random.Random(seed * 1_000_003 + i)))
        heapq.heappush(heap, (start_ms + int(offset * 1000), i, 0))
    step_ms = 1000.0 / hz
    while heap:
        ts, i, leg_i = heapq.heappop(heap)
        store, legs, offset, noise = plans[i]
        t = (ts - start_ms) / 1000.0 - offset
        while leg_i < len(legs) and t > legs[leg_i].t1:
            leg_i += 1
        if leg_i >= len(legs):
            continue
        leg = legs[leg_i]
        f = 0.0 if leg.t1 == leg.t0 else (t - leg.t0) / (leg.t1 - leg.t0)
        x = leg.x0 + (leg.x1 - leg.x0) * f + noise.gauss(0, noise_m)
        y = leg.y0 + (leg.y1 - leg.y0) * f + noise.gauss(0, noise_m)
        lat, lon = store.latlon(x, y)
        yield CustomerLocation(uid=f"{uid_prefix}-{i + 1:05d}", store_id=store.store_id,
                               latitude=lat, longitude=lon, country=store.country, ts=ts,
                               source="sim", accuracy_m=noise_m)
        heapq.heappush(heap, (ts + int(step_ms), i, leg_i))
