"""CAST and the conversions behind it, with Java's semantics as ksqlDB has them: integer
narrowing wraps, doubles and collections print as Java's ``toString``, strings parse leniently;
the casts ksqlDB refuses when the statement is planned; and how a JSON value is read as a
column's type."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.sqltypes import SqlType

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)


def java_string(v: Any) -> str:
    """Java's String.valueOf of a ksqlDB value: what CAST(x AS STRING) returns for it
    (lists ``[a, b]``, maps ``{k=v}``, structs ``Struct{F=v}`` skipping nulls)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return java_double(v)
    if isinstance(v, list):
        return "[" + ", ".join(java_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{java_string(k)}={java_string(x)}" for k, x in v.items()) + "}"
    return str(v)


def struct_string(v: Any) -> str:
    """Kafka Connect's Struct.toString: ``Struct{F0=1,F1=x}``, null fields left out."""
    inner = ",".join(f"{k}={java_string(x)}" for k, x in v.items() if x is not None)
    return "Struct{" + inner + "}"


def java_double(d: float) -> str:
    """Java's Double.toString (plain between 1e-3 and 1e7, else d.dddE±n)."""
    if d != d:
        return "NaN"
    if d in (float("inf"), float("-inf")):
        return "Infinity" if d > 0 else "-Infinity"
    if d == 0:
        return "-0.0" if str(d).startswith("-") else "0.0"
    if 1e-3 <= abs(d) < 1e7:
        text = repr(d)
        if "e" in text:  # (not in this range, but be safe)
            text = format(d, "f")
        return text if "." in text else text + ".0"
    sign, digits, exp = Decimal(repr(d)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    e10 = len(digits) + int(exp) - 1
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return ("-" if sign else "") + f"{mantissa}E{e10}"


def _to_integral(v: Any, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    if isinstance(v, str):
        n = int(v.strip())
        if not lo <= n <= hi:
            raise ValueError(v)
        return n
    if isinstance(v, float):  # Java's narrowing: toward zero, saturating, NaN -> 0
        if v != v:
            return 0
        return max(lo, min(hi, int(v))) if abs(v) != float("inf") else (hi if v > 0 else lo)
    n = int(v)
    span = hi - lo + 1  # Java's (int) of a long wraps
    return (n - lo) % span + lo


def sql_cast(ty: SqlType) -> Callable[[Any], Any]:
    """CAST(x AS ty) of a non-null value, as ksqlDB converts it (Java semantics: integer
    narrowing wraps, strings are Java's toString, arrays/maps/structs element by element)."""
    n = ty.name
    if n == "INTEGER":
        return lambda v: _to_integral(v, _INT_RANGE)
    if n == "BIGINT":
        return lambda v: _to_integral(v, _LONG_RANGE)
    if n in ("DOUBLE", "DECIMAL"):
        return lambda v: float(v.strip()) if isinstance(v, str) else float(v)
    if n == "STRING":
        return java_string
    if n == "BOOLEAN":

        def to_bool(v: Any) -> bool:
            if isinstance(v, str):
                t = v.strip().lower()
                if t in ("true", "t", "yes", "y"):
                    return True
                if t in ("false", "f", "no", "n"):
                    return False
                raise ValueError(v)
            return bool(v)

        return to_bool
    if n == "ARRAY":
        item = sql_cast(ty.params[0])
        return lambda v: [None if x is None else item(x) for x in v]
    if n == "MAP":
        kc, vc = sql_cast(ty.params[0]), sql_cast(ty.params[1])
        return lambda v: {kc(k): None if x is None else vc(x) for k, x in v.items()}
    if n == "STRUCT":
        fields = [(name, sql_cast(ft)) for name, ft in ty.params]

        def to_struct(v: Any) -> dict[str, Any]:
            return {
                name: None if v.get(name) is None else conv(v[name]) for name, conv in fields
            }

        return to_struct
    return lambda v: v


_COMPLEX = ("ARRAY", "MAP", "STRUCT")


def check_cast(from_type: SqlType, to_type: SqlType) -> None:
    """Casts ksqlDB refuses at statement time (a complex type from another type)."""
    if to_type.name in _COMPLEX and from_type.name != to_type.name:
        msg = f"Cast of {from_type} to {to_type} is not supported"
        raise StatementError(msg)
    if from_type.name in _COMPLEX and to_type.name not in (from_type.name, "STRING"):
        msg = f"Cast of {from_type} to {to_type} is not supported"
        raise StatementError(msg)


def caster(ty: SqlType) -> Callable[[Any], Any]:
    """How a JSON value is read as a column of type ``ty`` (a number from a string, a
    string from anything, a boolean from ``"true"``/``"false"``)."""
    n = ty.name
    if n in ("INTEGER", "BIGINT"):

        def to_int(v: Any) -> int:
            if isinstance(v, str):
                return int(v.strip())
            return int(v)

        return to_int
    if n in ("DOUBLE", "DECIMAL"):
        return float
    if n == "STRING":

        def to_str(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)

        return to_str
    if n == "BOOLEAN":

        def to_bool(v: Any) -> bool:
            if isinstance(v, str):
                if v.lower() in ("true", "false"):
                    return v.lower() == "true"
                raise ValueError(v)
            return bool(v)

        return to_bool
    return lambda v: v
