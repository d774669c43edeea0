"""Distances as ksqlDB computes them, and a grid index for "what is within r of here".

``haversine_km`` is ksqlDB's ``GEO_DISTANCE(lat1, lon1, lat2, lon2, 'km')``: R = 6371 km,
``2 * atan2(sqrt(a), sqrt(1 - a))``, inputs outside [-90, 90] / [-180, 180] rejected.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

EARTH_RADIUS_KM = 6371.0
FT_PER_KM = 3280.8399
M_PER_FT = 0.3048
_DEG = math.pi / 180.0


class GeoError(ValueError):
    pass


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    if not (-90.0 <= lat1 <= 90.0 and -90.0 <= lat2 <= 90.0):
        msg = "latitude must be in [-90, 90]"
        raise GeoError(msg)
    if not (-180.0 <= lon1 <= 180.0 and -180.0 <= lon2 <= 180.0):
        msg = "longitude must be in [-180, 180]"
        raise GeoError(msg)
    dlat = (lat2 - lat1) * _DEG
    dlon = (lon2 - lon1) * _DEG
    a = math.sin(dlat / 2) ** 2 + math.sin(dlon / 2) ** 2 * math.cos(lat1 * _DEG) * math.cos(
        lat2 * _DEG
    )
    return EARTH_RADIUS_KM * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a))


def distance_ft(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return haversine_km(lat1, lon1, lat2, lon2) * FT_PER_KM


@dataclass(frozen=True)
class LocalFrame:
    """Equirectangular metres around an anchor: x east, y north. Good to ~1e-5 over a store."""

    lat0: float
    lon0: float

    @property
    def _kx(self) -> float:
        return EARTH_RADIUS_KM * 1000.0 * _DEG * math.cos(self.lat0 * _DEG)

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self._kx, (lat - self.lat0) * EARTH_RADIUS_KM * 1000.0 * _DEG

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.lat0 + y / (EARTH_RADIUS_KM * 1000.0 * _DEG), self.lon0 + x / self._kx


K = TypeVar("K", bound=Hashable)


@dataclass
class GridIndex(Generic[K]):
    """Points on a square grid whose cell is no smaller than the largest query radius.

    A query looks at the 3x3 cells around the point, then checks the exact haversine distance,
    so the work per query grows with the points nearby, not with how many there are.
    """

    frame: LocalFrame
    cell_m: float
    _cells: dict[tuple[int, int], list[tuple[K, float, float, float]]] = field(  # key,lat,lon,r_ft
        default_factory=lambda: defaultdict(list)
    )
    size: int = 0

    # Projection error allowance: a 5 % larger cell plus a metre keeps every true neighbour
    # inside the 3x3 block even where the local frame is slightly off.
    SAFETY = 1.05

    @classmethod
    def build(
        cls, points: Iterable[tuple[K, float, float, float]]
    ) -> GridIndex[K]:
        """``points`` are (key, lat, lon, radius_ft); the cell fits the largest radius."""
        pts = list(points)
        if pts:
            lat0 = sum(p[1] for p in pts) / len(pts)
            lon0 = sum(p[2] for p in pts) / len(pts)
        else:
            lat0 = lon0 = 0.0
        max_radius_m = max((p[3] for p in pts), default=1.0) * M_PER_FT
        index: GridIndex[K] = cls(LocalFrame(lat0, lon0), max(max_radius_m, 1.0) * cls.SAFETY + 1)
        for key, lat, lon, radius_ft in pts:
            index.add(key, lat, lon, radius_ft)
        return index

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        x, y = self.frame.to_xy(lat, lon)
        return math.floor(x / self.cell_m), math.floor(y / self.cell_m)

    def add(self, key: K, lat: float, lon: float, radius_ft: float) -> None:
        if radius_ft * M_PER_FT > self.cell_m / self.SAFETY:
            msg = "radius larger than the grid cell: rebuild the index"
            raise ValueError(msg)
        self._cells[self._cell(lat, lon)].append((key, lat, lon, radius_ft))
        self.size += 1

    def within(self, lat: float, lon: float) -> Iterator[tuple[K, float]]:
        """Every (key, distance_ft) whose own radius covers (lat, lon)."""
        cx, cy = self._cell(lat, lon)
        cells = self._cells
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                bucket = cells.get((cx + dx, cy + dy))
                if not bucket:
                    continue
                for key, plat, plon, radius_ft in bucket:
                    d_ft = distance_ft(lat, lon, plat, plon)
                    if d_ft <= radius_ft:
                        yield key, d_ft
