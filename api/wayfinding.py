"""'Show me where': a small floor map of one store for one product, from the shopper's last
position, in the store's units (feet in the US, metres elsewhere). Pure: no I/O.

The map is drawn in a local plane (x east, y north) whose origin is the south-west corner of
what it shows, so a page scales it without knowing any geography. Shelves are anonymous
points (no names, no other shoppers); only the wanted product is named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from instore import geo
from instore.records import StoreProduct

FEET_COUNTRIES = frozenset({"US", "LR", "MM"})  # where shops measure in feet
SHELVES_MAX = 3000  # a huge store: an even sample of its shelves
MARGIN_M = 2.0
MIN_SIDE_M = 12.0  # a map of a few shelves still shows some floor around them

Units = Literal["m", "ft"]


def units_of(country: str | None) -> Units:
    """Feet in the United States (and Liberia, Myanmar), metres everywhere else."""
    return "ft" if (country or "").strip().upper() in FEET_COUNTRIES else "m"


class Spot(BaseModel):
    x: float
    y: float


class Target(Spot):
    sku: int
    name: str


class You(Spot):
    age_ms: int = Field(description="how old the position is")


class WherePublic(BaseModel):
    store_id: str
    units: Units = Field(description="the unit of every coordinate and distance here")
    width: float
    height: float
    shelves: list[tuple[float, float]] = Field(description="anonymous shelf points (x, y)")
    product: Target
    you: You | None = Field(description="the shopper's last position in this store, if known")
    distance: float | None = Field(description="straight-line distance from you to the product")
    route: list[Spot] = Field(description="the way to draw, from you to the product")


def _sample(points: Sequence[StoreProduct], most: int) -> list[StoreProduct]:
    if len(points) <= most:
        return list(points)
    return list(points[:: math.ceil(len(points) / most)])


def _widen(low: float, high: float) -> tuple[float, float]:
    """The span, widened about its middle to at least MIN_SIDE_M."""
    missing = MIN_SIDE_M - (high - low)
    return (low - missing / 2, high + missing / 2) if missing > 0 else (low, high)


def floor_map(store_id: str, products: Sequence[StoreProduct], target: StoreProduct,
              here: tuple[float, float, int] | None, country: str | None) -> WherePublic:
    """The map of ``target`` among ``products`` (its store's), with ``here`` = (lat, lon,
    age_ms) of the shopper when known."""
    units = units_of(country or target.country)
    scale = 1.0 / geo.M_PER_FT if units == "ft" else 1.0
    frame = geo.LocalFrame(target.latitude, target.longitude)
    shelves = [frame.to_xy(p.latitude, p.longitude) for p in _sample(products, SHELVES_MAX)]
    you_xy = frame.to_xy(here[0], here[1]) if here is not None else None
    xs = [x for x, _ in shelves] + [0.0] + ([you_xy[0]] if you_xy else [])
    ys = [y for _, y in shelves] + [0.0] + ([you_xy[1]] if you_xy else [])
    x0, x1 = _widen(min(xs) - MARGIN_M, max(xs) + MARGIN_M)
    y0, y1 = _widen(min(ys) - MARGIN_M, max(ys) + MARGIN_M)

    def local(xy: tuple[float, float]) -> tuple[float, float]:
        return round((xy[0] - x0) * scale, 2), round((xy[1] - y0) * scale, 2)

    px, py = local((0.0, 0.0))
    product = Target(sku=target.sku, name=target.name, x=px, y=py)
    you = None
    distance = None
    route: list[Spot] = []
    if here is not None and you_xy is not None:
        ux, uy = local(you_xy)
        you = You(x=ux, y=uy, age_ms=here[2])
        metres = geo.haversine_km(here[0], here[1], target.latitude, target.longitude) * 1000
        distance = round(metres * scale, 1)
        route = [Spot(x=ux, y=uy), Spot(x=px, y=py)]
    return WherePublic(
        store_id=store_id, units=units,
        width=round((x1 - x0) * scale, 2), height=round((y1 - y0) * scale, 2),
        shelves=[local(xy) for xy in shelves], product=product, you=you, distance=distance,
        route=route)
