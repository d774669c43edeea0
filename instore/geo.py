"""Distances as ksqlDB computes them, and a grid index for "what is within r of here".

``haversine_km`` is ksqlDB's ``GEO_DISTANCE(lat1, lon1, lat2, lon2, 'km')``, operation for
operation (its ``GeoDistance`` UDF): the central angle ``2 * asin(sqrt(a))`` times R = 6371 km
(3959 for miles), inputs outside [-90, 90] / [-180, 180] rejected.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from instore.errors import InstoreError

EARTH_RADIUS_KM = 6371.0
FT_PER_KM = 3280.8399
M_PER_FT = 0.3048
_DEG = math.pi / 180.0


class GeoError(InstoreError, ValueError):
    pass


def _central_angle(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle angle in radians (inputs already validated)."""
    return angle_with_cosines(lat1, lon1, lat2, lon2, math.cos(lat1 * _DEG),
                              math.cos(lat2 * _DEG))


def angle_with_cosines(lat1: float, lon1: float, lat2: float, lon2: float, cos1: float,
                       cos2: float) -> float:
    """The haversine's great-circle angle in radians, given the cosines of both latitudes (the
    spatial indexes' loops compute a point's once). The one definition: every distance here
    (GEO_DISTANCE, the worker's grid index, the ksqlDB FILTER index) is this value times the
    same factors, so they agree to the bit."""
    s1 = math.sin((lat2 - lat1) * _DEG / 2)
    s2 = math.sin((lon2 - lon1) * _DEG / 2)
    return 2 * math.asin(math.sqrt(s1 * s1 + s2 * s2 * cos1 * cos2))


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The formula alone (inputs already validated)."""
    return _central_angle(lat1, lon1, lat2, lon2) * EARTH_RADIUS_KM


def central_angle(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle angle in radians; out-of-range input raises GeoError."""
    if not (-90.0 <= lat1 <= 90.0 and -90.0 <= lat2 <= 90.0):
        msg = "valid latitude values for GeoDistance function are in the range of -90 to 90 decimal degrees"
        raise GeoError(msg)
    if not (-180.0 <= lon1 <= 180.0 and -180.0 <= lon2 <= 180.0):
        msg = (
            "valid longitude values for GeoDistance function are in the range of -180 to +180 "
            "decimal degrees"
        )
        raise GeoError(msg)
    return _central_angle(lat1, lon1, lat2, lon2)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return central_angle(lat1, lon1, lat2, lon2) * EARTH_RADIUS_KM


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

# Planar pre-filter slack: the local frame is good to ~1e-4 over kilometres; 1 % + 0.5 m keeps
# every true neighbour, and the exact haversine decides.
_PREFILTER_REL = 1.01
_PREFILTER_ABS_M = 0.5


_Entry = tuple[Any, float, float, float, float, float, float, float]


class _Grid:
    """One square grid for points whose radius is at most ``cell_m``."""

    __slots__ = ("cell_m", "cells")

    def __init__(self, cell_m: float) -> None:
        self.cell_m = cell_m
        # key, x, y, lat, lon, radius_ft, prefilter radius^2, cos(lat)
        self.cells: dict[tuple[int, int], list[_Entry]] = defaultdict(list)


@dataclass
class GridIndex(Generic[K]):
    """Points with a radius each, in square grids whose cell is no smaller than the radius.

    Points are grouped by radius class (powers of two in metres), each class in its own grid,
    so small-radius points are not searched with a large radius's cells. A query looks at the
    3x3 cells around the point in each class, pre-filters by planar distance in the store's
    local frame, then checks the exact haversine distance: the work per query grows with the
    points nearby, not with how many there are.
    """

    frame: LocalFrame
    _grids: dict[int, _Grid] = field(default_factory=dict)
    size: int = 0

    @classmethod
    def build(cls, points: Iterable[tuple[K, float, float, float]]) -> GridIndex[K]:
        """``points`` are (key, lat, lon, radius_ft)."""
        pts = list(points)
        if pts:
            lat0 = sum(p[1] for p in pts) / len(pts)
            lon0 = sum(p[2] for p in pts) / len(pts)
        else:
            lat0 = lon0 = 0.0
        index: GridIndex[K] = cls(LocalFrame(lat0, lon0))
        for key, lat, lon, radius_ft in pts:
            index.add(key, lat, lon, radius_ft)
        return index

    def add(self, key: K, lat: float, lon: float, radius_ft: float) -> None:
        radius_m = max(radius_ft * M_PER_FT, 0.01)
        cls_ = math.ceil(math.log2(radius_m))
        grid = self._grids.get(cls_)
        if grid is None:
            grid = self._grids[cls_] = _Grid((2.0**cls_) * _PREFILTER_REL + _PREFILTER_ABS_M)
        x, y = self.frame.to_xy(lat, lon)
        cell = (math.floor(x / grid.cell_m), math.floor(y / grid.cell_m))
        pre = radius_m * _PREFILTER_REL + _PREFILTER_ABS_M
        grid.cells[cell].append((key, x, y, lat, lon, radius_ft, pre * pre, math.cos(lat * _DEG)))
        self.size += 1

    def within(self, lat: float, lon: float) -> list[tuple[K, float]]:
        """Every (key, distance_ft) whose own radius covers (lat, lon)."""
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            msg = "position outside [-90, 90] x [-180, 180]"
            raise GeoError(msg)
        # the worker's hot path: the cosine of the position's latitude computed once
        c1 = math.cos(lat * _DEG)
        radius_km, ft_per_km = EARTH_RADIUS_KM, FT_PER_KM
        x, y = self.frame.to_xy(lat, lon)
        out: list[tuple[K, float]] = []
        for grid in self._grids.values():
            cm = grid.cell_m
            cx, cy = math.floor(x / cm), math.floor(y / cm)
            cells = grid.cells
            for gx in (cx - 1, cx, cx + 1):
                for gy in (cy - 1, cy, cy + 1):
                    bucket = cells.get((gx, gy))
                    if not bucket:
                        continue
                    for key, px, py, plat, plon, radius_ft, pre2, c2 in bucket:
                        dx = x - px
                        dy = y - py
                        if dx * dx + dy * dy > pre2:
                            continue
                        # (angle * R) * ft/km, in that order: GEO_DISTANCE(..., 'km') * ft/km
                        d_ft = angle_with_cosines(lat, lon, plat, plon, c1, c2) * radius_km \
                            * ft_per_km
                        if d_ft <= radius_ft:
                            out.append((key, d_ft))
        return out
