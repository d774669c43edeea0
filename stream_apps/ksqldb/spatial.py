"""The physical plan for ``FILTER(points, x => GEO_DISTANCE(lat, lon, x->LAT, x->LON, 'km') * k
<= x->R AND ...)``: a grid index over the array, built once per array version.

A FILTER over a table row's array of points is evaluated for every stream record that joins
the row. Instead of checking every element, the filter reads one cell of a grid of small cells
(each element is listed in every cell its radius disc touches), computes the distance of those
elements with the same operations in the same order as ``GEO_DISTANCE`` (so the same bits),
decides the radius conjunct with it, and evaluates the other conjuncts only for the elements
left (and not at all for an element whose other conjuncts do not depend on the row: they are
probed once per element when the index is built). The result is exactly what the SQL defines:
the elements, in array order, whose whole predicate is true.

The distances are kept for the row (``SpatialFilter.last``), so a projection of the same
expression over the kept elements (``TRANSFORM(..., x => GEO_DISTANCE(...) * k)``) reads them
instead of computing them again.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from instore.geo import EARTH_RADIUS_KM, angle_with_cosines
from stream_apps.ksqldb.nodes import Bin, Call, Col, Deref, Expr, Lambda, Lit, children, map_children

Fn = Callable[[tuple], Any]
_DEG = math.pi / 180.0
_M_PER_DEG = EARTH_RADIUS_KM * 1000.0 * _DEG
# Planar pre-filter slack (the local frame is good to ~1e-4 over a few km): the exact distance
# decides, the pre-filter only has to keep every element that can pass.
_REL = 1.01
_ABS_M = 0.5


@dataclass(frozen=True)
class SpatialSpec:
    """What the planner recognised in a FILTER lambda."""

    lat: Any = None  # the outer latitude expression (no lambda parameter in it)
    lon: Any = None
    lat_field: str = ""
    lon_field: str = ""
    radius_field: str = ""
    k: Any = 1  # the literal multiplier, as written (int or float)
    conjunct: int = 0  # index of the radius conjunct among the lambda body's conjuncts
    distance_expr: Any = None  # GEO_DISTANCE(...) * k with the parameter renamed to '\0x'


def rename_param(e: Expr, param: str, to: str = "\0x") -> Expr:
    """``e`` with references to the lambda parameter ``param`` renamed (alpha-equivalence)."""
    match e:
        case Col(qualifier=None, name=name) if name == param:
            return Col(None, to)
        case Lambda(params=params) if param in params:
            return e  # shadowed
    return map_children(e, lambda x: rename_param(x, param, to))


def conjuncts(e: Expr) -> list[Expr]:
    match e:
        case Bin(op="AND", left=a, right=b):
            return conjuncts(a) + conjuncts(b)
    return [e]


def uses_param(e: Expr, param: str) -> bool:
    match e:
        case Col(qualifier=None, name=name) if name == param:
            return True
        case Lambda(params=params) if param in params:
            return False
    return any(uses_param(x, param) for x in children(e))


_KM = ("km", "kilometers", "kilometer")


def recognise(lam: Lambda) -> SpatialSpec | None:
    """``GEO_DISTANCE(a, b, x->LAT, x->LON[, 'km']) [* k] <= x->R`` among the lambda's conjuncts
    (k a positive literal, a and b free of the parameter)."""
    param = lam.params[0]

    def field_of(x: Expr) -> str | None:
        match x:
            case Deref(expr=Col(qualifier=None, name=name), field=f) if name == param:
                return f
        return None

    for idx, c in enumerate(conjuncts(lam.body)):
        if not (isinstance(c, Bin) and c.op == "<="):
            continue
        left = c.left
        radius = field_of(c.right)
        if radius is None:
            continue
        k: Any = 1
        geo = left
        match left:
            case Bin(op="*", left=g, right=Lit(value=int() | float() as v)) if (
                not isinstance(v, bool) and v > 0
            ):
                k, geo = v, g
        match geo:
            case Call(name="GEO_DISTANCE", args=(a, b, lat, lon)):
                pass
            case Call(name="GEO_DISTANCE", args=(a, b, lat, lon, Lit(value=unit))) if (
                str(unit).lower() in _KM
            ):
                pass
            case _:
                continue
        lat_f, lon_f = field_of(lat), field_of(lon)
        if lat_f is None or lon_f is None or uses_param(a, param) or uses_param(b, param):
            continue
        return SpatialSpec(a, b, lat_f, lon_f, radius, k, idx, rename_param(left, param))
    return None


def _field(d: Any, name: str) -> Any:
    if not isinstance(d, dict):
        return None
    v = d.get(name)
    if v is None:
        v = d.get(name.upper())
    return v


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class PointIndex:
    """Array elements with a radius each, in a grid of small square cells: an element is listed
    in every cell its (pre-filter) disc touches, so a query reads the one cell it falls in and
    checks only elements whose disc reaches that cell."""

    __slots__ = ("cell_m", "cells", "kx", "lat0", "lon0")

    def __init__(self, points: list[tuple[Any, ...]], cell_m: float = 4.0) -> None:
        """``points``: (element index, lat, lon, radius bound in metres, radius as in the
        element (the right side of the radius comparison), whether the FILTER's other
        conjuncts must be evaluated per row for it)."""
        self.cell_m = cell_m
        self.lat0 = sum(p[1] for p in points) / len(points) if points else 0.0
        self.lon0 = sum(p[2] for p in points) / len(points) if points else 0.0
        self.kx = _M_PER_DEG * math.cos(self.lat0 * _DEG)
        cells: dict[tuple[int, int], list[tuple[Any, ...]]] = defaultdict(list)
        floor = math.floor
        for i, lat, lon, bound_m, radius, per_row in points:
            x = (lon - self.lon0) * self.kx
            y = (lat - self.lat0) * _M_PER_DEG
            pre = bound_m * _REL + _ABS_M
            entry = (i, x, y, lat, lon, pre * pre, math.cos(lat * _DEG), radius, per_row)
            for gx in range(floor((x - pre) / cell_m), floor((x + pre) / cell_m) + 1):
                x0 = gx * cell_m
                dx = x0 - x if x < x0 else (x - x0 - cell_m if x > x0 + cell_m else 0.0)
                for gy in range(floor((y - pre) / cell_m), floor((y + pre) / cell_m) + 1):
                    y0 = gy * cell_m
                    dy = y0 - y if y < y0 else (y - y0 - cell_m if y > y0 + cell_m else 0.0)
                    if dx * dx + dy * dy <= pre * pre:  # the disc touches the cell
                        cells[(gx, gy)].append(entry)
        for bucket in cells.values():
            bucket.sort()
        self.cells = dict(cells)

    def select(
        self, lat: float, lon: float, k: Any, arr: list[Any], rest: Fn | None, r: tuple
    ) -> tuple[list[Any], list[float]]:
        """The elements of ``arr`` (in order) whose ``GEO_DISTANCE * k <= radius`` and for
        which ``rest((*r, x))`` is true, with their ``GEO_DISTANCE * k`` (``within``'s loop
        with the filter folded in: no intermediate list)."""
        x = (lon - self.lon0) * self.kx
        y = (lat - self.lat0) * _M_PER_DEG
        cm = self.cell_m
        kept: list[Any] = []
        values: list[float] = []
        bucket = self.cells.get((math.floor(x / cm), math.floor(y / cm)))
        if not bucket:
            return kept, values
        c1 = math.cos(lat * _DEG)
        keep, keep_v = kept.append, values.append
        for i, px, py, plat, plon, pre2, c2, radius, per_row in bucket:
            dx = x - px
            dy = y - py
            if dx * dx + dy * dy > pre2:
                continue
            # GEO_DISTANCE(lat, lon, plat, plon, 'km') * k, to the bit
            v = angle_with_cosines(lat, lon, plat, plon, c1, c2) * EARTH_RADIUS_KM * k
            if v <= radius:
                e = arr[i]
                if not per_row or rest((*r, e)) is True:  # type: ignore[misc]
                    keep(e)
                    keep_v(v)
        return kept, values


class _ReadsRow(Exception):
    pass


class _RefusingRow(dict):  # type: ignore[type-arg]
    """A row that raises on any read: tells whether an expression depends on the row."""

    def _refuse(self, *_a: Any, **_k: Any) -> Any:
        raise _ReadsRow

    get = __getitem__ = __contains__ = __iter__ = __len__ = _refuse  # type: ignore[assignment]
    keys = values = items = copy = _refuse  # type: ignore[assignment]


class SpatialFilter:
    """The compiled FILTER (see the module docstring). ``exact`` is the plain evaluation, used
    when the outer point is out of range (so the error is reported the way GEO_DISTANCE does)."""

    def __init__(
        self,
        spec: SpatialSpec,
        arr: Fn,
        lat: Fn,
        lon: Fn,
        rest: Fn | None,
        exact: Fn,
        cache_size: int = 256,
    ) -> None:
        self.spec = spec
        self.arr = arr
        self.lat = lat
        self.lon = lon
        self.rest = rest
        self.exact = exact
        self.cache_size = cache_size
        self._indexes: OrderedDict[int, tuple[list[Any], PointIndex | None]] = OrderedDict()
        self._probe: tuple[Any, ...] = ()
        # the last row's (row, kept elements, their distance expression values)
        self.last: tuple[Any, list[Any] | None, list[Any] | None] = (None, None, None)

    def index_of(self, arr: list[Any]) -> PointIndex | None:
        key = id(arr)
        hit = self._indexes.get(key)
        if hit is not None and hit[0] is arr:
            self._indexes.move_to_end(key)
            return hit[1]
        spec = self.spec
        k = spec.k
        points = []
        for i, x in enumerate(arr):
            lat, lon, r = (
                _field(x, spec.lat_field),
                _field(x, spec.lon_field),
                _field(x, spec.radius_field),
            )
            if not (_num(lat) and _num(lon) and _num(r)) or r < 0 or not math.isfinite(r):
                continue  # GEO_DISTANCE or the comparison is null: never kept
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                continue
            per_row = self._per_row(x)
            if per_row is None:
                continue  # the other conjuncts are never true for this element
            # km * k <= r  =>  km <= r / k (plus a hair for the rounding of both sides)
            points.append(
                (i, float(lat), float(lon), r / k * 1000.0 * (1 + 1e-9) + 1e-6, r, per_row)
            )
        index = PointIndex(points) if points else None
        self._indexes[key] = (arr, index)
        if len(self._indexes) > self.cache_size:
            self._indexes.popitem(last=False)
        return index

    def _per_row(self, x: Any) -> bool | None:
        """Whether the other conjuncts must be evaluated per row for element ``x``: they are
        evaluated once against rows that refuse to be read; if that gives a value without
        reading the row (``x->STARTS_AT IS NULL OR ...`` with a null STARTS_AT), the value is
        the same for every row: true (False: nothing to do per row) or not (None: the element
        never passes)."""
        if self.rest is None:
            return False
        try:
            v = self.rest((*self._probe, x))
        except _ReadsRow:
            return True
        except Exception:  # noqa: BLE001 - an error the real evaluation will report per row
            return True
        return False if v is True else None

    def __call__(self, r: tuple) -> Any:
        a = self.arr(r)
        if a is None:
            self.last = (r, None, None)
            return None
        lat, lon = self.lat(r), self.lon(r)
        if lat is None or lon is None:  # the distance is null for every element
            empty: list[Any] = []
            self.last = (r, empty, [])
            return empty
        if not (_num(lat) and _num(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            out = self.exact(r)
            self.last = (r, None, None)
            return out
        if len(self._probe) != len(r):
            self._probe = tuple(_RefusingRow() for _ in r)
        index = self.index_of(a)
        if index is None:
            nothing: list[Any] = []
            self.last = (r, nothing, [])
            return nothing
        kept, values = index.select(float(lat), float(lon), self.spec.k, a, self.rest, r)
        self.last = (r, kept, values)
        return kept
