"""Scalar, aggregate and table functions, with ksqlDB's null and error rules.

A scalar function that fails on a row raises ``EvalError``: the query logs it to its processing
log and the expression is null for that row, as in ksqlDB. Most functions return null when an
argument is null.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from instore.geo import EARTH_RADIUS_KM, GeoError, central_angle
from stream_apps.ksqldb.errors import EvalError, listed
from stream_apps.ksqldb.sqltypes import BIGINT, BOOLEAN, DOUBLE, INT, STRING, SqlType

EARTH_RADIUS_MI = 3959.0


_GEO_CACHE: dict[tuple[Any, ...], float] = {}


def geo_distance(lat1: Any, lon1: Any, lat2: Any, lon2: Any, unit: Any = None) -> float | None:
    """ksqlDB's GEO_DISTANCE (R = 6371 km, 3959 mi; km when no unit); bad input is an error.

    A query often computes the same distance twice for a row (in a FILTER and in the projected
    column): the last few thousand results are remembered (a pure function of its inputs)."""
    key = (lat1, lon1, lat2, lon2, unit)
    hit = _GEO_CACHE.get(key)
    if hit is not None:
        return hit
    value = _geo_distance(lat1, lon1, lat2, lon2, unit)
    if value is not None:
        if len(_GEO_CACHE) >= 8192:
            _GEO_CACHE.clear()
        _GEO_CACHE[key] = value
    return value


_MILES = ("mi", "mile", "miles")
_KMS = ("km", "kilometer", "kilometers", "kilometre", "kilometres")


def _geo_distance(lat1: Any, lon1: Any, lat2: Any, lon2: Any, unit: Any) -> float | None:
    """ksqlDB's GeoDistance UDF: no unit, a null or blank one mean kilometres."""
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    radius = EARTH_RADIUS_KM
    if unit is not None and str(unit).strip():
        u = str(unit).strip().lower()
        if u in _MILES:
            radius = EARTH_RADIUS_MI
        elif u not in _KMS:
            msg = (
                "GeoDistance function units parameter must be one of "
                + listed([*_MILES, *_KMS], "or")
                + ". Values are case-insensitive."
            )
            raise EvalError(msg)
    try:
        return central_angle(float(lat1), float(lon1), float(lat2), float(lon2)) * radius
    except GeoError as exc:
        raise EvalError(str(exc)) from None


def _initcap(s: Any) -> str:
    return " ".join(w[:1].upper() + w[1:].lower() for w in str(s).split(" "))


def _nullsafe(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        try:
            return fn(*args)
        except (ValueError, TypeError, ZeroDivisionError, OverflowError, IndexError) as exc:
            msg = f"{fn.__name__}: {exc}"
            raise EvalError(msg) from None

    wrapper.__name__ = fn.__name__
    return wrapper


def _round(x: Any, digits: Any = 0) -> Any:
    if isinstance(x, int) and digits >= 0:
        return x
    q = 10 ** int(digits)
    v = math.floor(float(x) * q + 0.5) / q  # ksqlDB rounds half up
    return int(v) if digits == 0 and isinstance(x, int) else v


def _substring(s: str, pos: int, length: int | None = None) -> str:
    start = pos - 1 if pos > 0 else len(s) + pos
    start = max(start, 0)
    return s[start:] if length is None else s[start : start + length]


def _ts_to_string(ts: int, fmt: str, tz: str = "UTC") -> str:
    py = (
        fmt.replace("yyyy", "%Y")
        .replace("MM", "%m")
        .replace("dd", "%d")
        .replace("HH", "%H")
        .replace("mm", "%M")
        .replace("ss", "%S")
        .replace("SSS", "%f")
        .replace("'T'", "T")
        .replace("'Z'", "Z")
    )
    text = datetime.fromtimestamp(ts / 1000, tz=UTC).strftime(py)
    if "%f" in py:
        text = text.replace(f"{ts % 1000:03d}000", f"{ts % 1000:03d}")
    return text


def _extract_json(doc: str, path: str) -> str | None:
    try:
        value: Any = json.loads(doc)
    except json.JSONDecodeError:
        return None
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path.lstrip("$")):
        name, idx = part
        if name:
            if not isinstance(value, dict) or name not in value:
                return None
            value = value[name]
        else:
            if not isinstance(value, list) or int(idx) >= len(value):
                return None
            value = value[int(idx)]
    return value if isinstance(value, str) else json.dumps(value)


def _array_concat(a: Any, b: Any) -> Any:
    if a is None:
        return None if b is None else list(b)
    if b is None:
        return list(a)
    return [*a, *b]


def _array_max(a: Any) -> Any:
    vals = [v for v in a if v is not None] if a is not None else []
    return max(vals) if vals else None


def _array_min(a: Any) -> Any:
    vals = [v for v in a if v is not None] if a is not None else []
    return min(vals) if vals else None


def _coalesce(*args: Any) -> Any:
    for a in args:
        if a is not None:
            return a
    return None


def _concat(*args: Any) -> Any:
    return "".join(str(a) for a in args if a is not None)


def _concat_ws(sep: Any, *args: Any) -> Any:
    if sep is None:
        return None
    return str(sep).join(str(a) for a in args if a is not None)


def _greatest(*args: Any) -> Any:
    vals = [a for a in args if a is not None]
    return max(vals) if vals else None


def _least(*args: Any) -> Any:
    vals = [a for a in args if a is not None]
    return min(vals) if vals else None


# name -> (callable, return type or None = type of first argument, null-safe already applied)
SCALARS: dict[str, tuple[Callable[..., Any], SqlType | None]] = {
    "GEO_DISTANCE": (geo_distance, DOUBLE),
    "ABS": (_nullsafe(abs), None),
    "ROUND": (_nullsafe(_round), None),
    "FLOOR": (_nullsafe(math.floor), None),
    "CEIL": (_nullsafe(math.ceil), None),
    "SQRT": (_nullsafe(math.sqrt), DOUBLE),
    "LN": (_nullsafe(math.log), DOUBLE),
    "EXP": (_nullsafe(math.exp), DOUBLE),
    "POWER": (_nullsafe(lambda a, b: float(a) ** float(b)), DOUBLE),
    "SIGN": (_nullsafe(lambda a: (a > 0) - (a < 0)), INT),
    "UCASE": (_nullsafe(lambda s: str(s).upper()), STRING),
    "UPPER": (_nullsafe(lambda s: str(s).upper()), STRING),
    "LCASE": (_nullsafe(lambda s: str(s).lower()), STRING),
    "INITCAP": (_nullsafe(_initcap), STRING),
    "LOWER": (_nullsafe(lambda s: str(s).lower()), STRING),
    "LEN": (_nullsafe(len), INT),
    "LENGTH": (_nullsafe(len), INT),
    "TRIM": (_nullsafe(lambda s: str(s).strip()), STRING),
    "SUBSTRING": (_nullsafe(_substring), STRING),
    "REPLACE": (_nullsafe(lambda s, a, b: str(s).replace(a, b)), STRING),
    "SPLIT": (
        _nullsafe(lambda s, d: str(s).split(d) if d else list(str(s))),
        SqlType("ARRAY", (STRING,)),
    ),
    "INSTR": (_nullsafe(lambda s, sub: str(s).find(sub) + 1), INT),
    "LPAD": (
        _nullsafe(lambda s, n, p: (p * n + str(s))[-n:] if len(str(s)) < n else str(s)[:n]),
        STRING,
    ),
    "RPAD": (_nullsafe(lambda s, n, p: (str(s) + p * n)[:n]), STRING),
    "CONCAT": (_concat, STRING),
    "CONCAT_WS": (_concat_ws, STRING),
    "COALESCE": (_coalesce, None),
    "IFNULL": (lambda a, b: b if a is None else a, None),
    "NULLIF": (lambda a, b: None if a == b else a, None),
    "AS_VALUE": (lambda a: a, None),
    "GREATEST": (_greatest, None),
    "LEAST": (_least, None),
    "ARRAY_LENGTH": (lambda a: None if a is None else len(a), INT),
    "ARRAY_CONTAINS": (lambda a, v: None if a is None else v in a, BOOLEAN),
    "ARRAY_MAX": (_array_max, None),
    "ARRAY_MIN": (_array_min, None),
    "ARRAY_CONCAT": (_array_concat, None),
    "ARRAY_DISTINCT": (_nullsafe(lambda a: list(dict.fromkeys(a))), None),
    "ARRAY_JOIN": (
        _nullsafe(lambda a, sep=",": sep.join("null" if v is None else str(v) for v in a)),
        STRING,
    ),
    "TIMESTAMPTOSTRING": (_nullsafe(_ts_to_string), STRING),
    "UNIX_TIMESTAMP": (lambda *a: int(datetime.now(tz=UTC).timestamp() * 1000), BIGINT),
    "EXTRACTJSONFIELD": (_nullsafe(_extract_json), STRING),
    "MAP_KEYS": (_nullsafe(lambda m: list(m.keys())), SqlType("ARRAY", (STRING,))),
}
LAMBDA_FUNCTIONS = {"TRANSFORM", "FILTER", "REDUCE"}


# ---------------------------------------------------------------------------------------------
# Aggregates: small accumulator classes. ``add`` folds a value in; ``result`` reads it.


class Agg:
    return_type: SqlType | None = None  # None = the argument's type

    def __init__(self) -> None:
        self.state: Any = None

    def add(self, v: Any) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        return self.state


class Count(Agg):
    return_type = BIGINT

    def __init__(self, star: bool = False) -> None:
        super().__init__()
        self.state = 0
        self.star = star

    def add(self, v: Any) -> None:
        if self.star or v is not None:
            self.state += 1


class Sum(Agg):
    def __init__(self) -> None:
        super().__init__()
        self.state = 0

    def add(self, v: Any) -> None:
        if v is not None:
            self.state += v


class Avg(Agg):
    return_type = DOUBLE

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.total = 0.0

    def add(self, v: Any) -> None:
        if v is not None:
            self.n += 1
            self.total += v

    def result(self) -> Any:
        return self.total / self.n if self.n else None


class Min(Agg):
    def add(self, v: Any) -> None:
        if v is not None and (self.state is None or v < self.state):
            self.state = v


class Max(Agg):
    def add(self, v: Any) -> None:
        if v is not None and (self.state is None or v > self.state):
            self.state = v


class _ByOffset(Agg):
    """LATEST_BY_OFFSET / EARLIEST_BY_OFFSET ``(col [, n] [, ignoreNulls])``: one value, or an
    array of up to n with n; nulls skipped unless ignoreNulls is false."""

    latest = True

    def __init__(self, *params: Any) -> None:
        super().__init__()
        self.n: int | None = None
        self.ignore_nulls = True
        for p in params:
            if isinstance(p, bool):
                self.ignore_nulls = p
            elif isinstance(p, int):
                self.n = p
        self.items: list[Any] = []
        self.seen = False

    def add(self, v: Any) -> None:
        if v is None and self.ignore_nulls:
            return
        if self.n is None:
            if self.latest or not self.seen:
                self.state = v
                self.seen = True
            return
        if self.latest:
            self.items.append(v)
            if len(self.items) > self.n:
                del self.items[0]
        elif len(self.items) < self.n:
            self.items.append(v)

    def result(self) -> Any:
        return list(self.items) if self.n is not None else self.state


class LatestByOffset(_ByOffset):
    latest = True


class EarliestByOffset(_ByOffset):
    latest = False


class TopK(Agg):
    """TOPK(col, k): the k greatest values, greatest first (TOPKDISTINCT: distinct ones)."""

    distinct = False

    def __init__(self, k: Any = 1, *_: Any) -> None:
        super().__init__()
        self.k = int(k)
        self.items: list[Any] = []

    def add(self, v: Any) -> None:
        if v is None or (self.distinct and v in self.items):
            return
        self.items.append(v)
        self.items.sort(reverse=True)
        del self.items[self.k :]

    def result(self) -> Any:
        return list(self.items)


class TopKDistinct(TopK):
    distinct = True


class CollectList(Agg):
    LIMIT = 1000  # ksqlDB's default ksql.functions.collect_list.limit

    def __init__(self) -> None:
        super().__init__()
        self.state = []

    def add(self, v: Any) -> None:
        if len(self.state) < self.LIMIT:
            self.state.append(v)

    def result(self) -> Any:
        return list(self.state)


class CollectSet(Agg):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, Any] = {}

    def add(self, v: Any) -> None:
        if v is not None:
            self.items.setdefault(json.dumps(v, sort_keys=True, default=str), v)

    def result(self) -> Any:
        return list(self.items.values())


class CountDistinct(Agg):
    return_type = BIGINT

    def __init__(self) -> None:
        super().__init__()
        self.items: set[str] = set()

    def add(self, v: Any) -> None:
        if v is not None:
            self.items.add(json.dumps(v, sort_keys=True, default=str))

    def result(self) -> Any:
        return len(self.items)


class Histogram(Agg):
    return_type = SqlType("MAP", (STRING, BIGINT))

    def __init__(self) -> None:
        super().__init__()
        self.state = {}

    def add(self, v: Any) -> None:
        if v is not None:
            self.state[str(v)] = self.state.get(str(v), 0) + 1

    def result(self) -> Any:
        return dict(self.state)


AGGREGATES: dict[str, type[Agg]] = {
    "COUNT": Count,
    "SUM": Sum,
    "AVG": Avg,
    "MIN": Min,
    "MAX": Max,
    "LATEST_BY_OFFSET": LatestByOffset,
    "EARLIEST_BY_OFFSET": EarliestByOffset,
    "COLLECT_LIST": CollectList,
    "COLLECT_SET": CollectSet,
    "COUNT_DISTINCT": CountDistinct,
    "HISTOGRAM": Histogram,
    "TOPK": TopK,
    "TOPKDISTINCT": TopKDistinct,
}
# aggregates that return an array of their argument's type
ARRAY_AGGREGATES = {"COLLECT_LIST", "COLLECT_SET", "TOPK", "TOPKDISTINCT"}
TABLE_FUNCTIONS = {"EXPLODE"}


def function_names() -> list[dict[str, str]]:
    out = [{"name": n, "type": "SCALAR", "category": ""} for n in SCALARS]
    out += [{"name": n, "type": "SCALAR", "category": "LAMBDA"} for n in LAMBDA_FUNCTIONS]
    out += [{"name": n, "type": "AGGREGATE", "category": ""} for n in AGGREGATES]
    out += [{"name": n, "type": "TABLE", "category": ""} for n in TABLE_FUNCTIONS]
    return sorted(out, key=lambda f: f["name"])
