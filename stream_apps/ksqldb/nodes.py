"""The expression tree the parser builds: one frozen node class per kind of expression.

Nodes are values: equal when their fields are equal, hashable (the compiler memoises by node,
the planner compares a projection's expressions with GROUP BY's), never changed in place (a
rewrite builds new nodes: ``map_children``). Code reads them with ``match``::

    match e:
        case Lit(value=v): ...
        case Bin(op="AND", left=a, right=b): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from stream_apps.ksqldb.sqltypes import SqlType


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: None (NULL), a bool, an int, a float or a str."""

    value: Any


@dataclass(frozen=True, slots=True)
class Col:
    """A column (``qualifier.name`` or ``name``), or a lambda parameter."""

    qualifier: str | None
    name: str


@dataclass(frozen=True, slots=True)
class Deref:
    """``expr->field``: a struct's field."""

    expr: Expr
    field: str


@dataclass(frozen=True, slots=True)
class Index:
    """``expr[index]``: an array's element (1-based, negative from the end) or a map's value."""

    expr: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Bin:
    """A binary operator: AND OR = <> < <= > >= + - * / % ||."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    expr: Expr


@dataclass(frozen=True, slots=True)
class Neg:
    expr: Expr


@dataclass(frozen=True, slots=True)
class IsNull:
    """``expr IS [NOT] NULL``."""

    expr: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class Distinct:
    """``left IS [NOT] DISTINCT FROM right``."""

    left: Expr
    right: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class Between:
    """``expr [NOT] BETWEEN low AND high``."""

    expr: Expr
    low: Expr
    high: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class In:
    """``expr [NOT] IN (items...)``."""

    expr: Expr
    items: tuple[Expr, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Like:
    """``expr [NOT] LIKE pattern``."""

    expr: Expr
    pattern: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class Case:
    """``CASE [operand] WHEN w THEN t ... [ELSE default] END``."""

    operand: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None


@dataclass(frozen=True, slots=True)
class Cast:
    expr: Expr
    type: SqlType


@dataclass(frozen=True, slots=True)
class Struct:
    """``STRUCT(name := expr, ...)``."""

    fields: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True, slots=True)
class Array:
    """``ARRAY[expr, ...]``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Map:
    """``MAP(key := value, ...)``."""

    entries: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: ``NAME([DISTINCT] args...)``; ``COUNT(*)`` has the one argument
    ``Star(None)``."""

    name: str
    args: tuple[Expr, ...]
    distinct: bool = False


@dataclass(frozen=True, slots=True)
class Lambda:
    """``(params...) => body``: an argument of TRANSFORM, FILTER or REDUCE."""

    params: tuple[str, ...]
    body: Expr


@dataclass(frozen=True, slots=True)
class Star:
    """``*`` or ``qualifier.*``: a select item, or COUNT's argument."""

    qualifier: str | None


Expr: TypeAlias = (
    Lit | Col | Deref | Index | Bin | Not | Neg | IsNull | Distinct | Between | In | Like | Case
    | Cast | Struct | Array | Map | Call | Lambda | Star
)
NULL = Lit(None)


def children(e: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of ``e``, in the order they are written."""
    match e:
        case Deref(expr=x) | Not(expr=x) | Neg(expr=x) | IsNull(expr=x) | Cast(expr=x):
            return (x,)
        case Index(expr=a, index=b) | Bin(left=a, right=b) | Distinct(left=a, right=b):
            return (a, b)
        case Like(expr=a, pattern=b):
            return (a, b)
        case Between(expr=x, low=lo, high=hi):
            return (x, lo, hi)
        case In(expr=x, items=items):
            return (x, *items)
        case Case(operand=operand, whens=whens, default=default):
            branches = [x for pair in whens for x in pair]
            return tuple(x for x in (operand, *branches, default) if x is not None)
        case Struct(fields=fields):
            return tuple(x for _, x in fields)
        case Array(items=items) | Call(args=items):
            return items
        case Map(entries=entries):
            return tuple(x for pair in entries for x in pair)
        case Lambda(body=body):
            return (body,)
    return ()


def map_children(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """``e`` with ``f`` applied to each of its sub-expressions (``e`` itself when a leaf)."""
    match e:
        case Deref(expr=x, field=name):
            return Deref(f(x), name)
        case Index(expr=a, index=b):
            return Index(f(a), f(b))
        case Bin(op=op, left=a, right=b):
            return Bin(op, f(a), f(b))
        case Not(expr=x):
            return Not(f(x))
        case Neg(expr=x):
            return Neg(f(x))
        case IsNull(expr=x, negated=neg):
            return IsNull(f(x), neg)
        case Distinct(left=a, right=b, negated=neg):
            return Distinct(f(a), f(b), neg)
        case Between(expr=x, low=lo, high=hi, negated=neg):
            return Between(f(x), f(lo), f(hi), neg)
        case In(expr=x, items=items, negated=neg):
            return In(f(x), tuple(f(i) for i in items), neg)
        case Like(expr=x, pattern=p, negated=neg):
            return Like(f(x), f(p), neg)
        case Case(operand=operand, whens=whens, default=default):
            return Case(
                None if operand is None else f(operand),
                tuple((f(w), f(t)) for w, t in whens),
                None if default is None else f(default),
            )
        case Cast(expr=x, type=ty):
            return Cast(f(x), ty)
        case Struct(fields=fields):
            return Struct(tuple((n, f(x)) for n, x in fields))
        case Array(items=items):
            return Array(tuple(f(x) for x in items))
        case Map(entries=entries):
            return Map(tuple((f(k), f(v)) for k, v in entries))
        case Call(name=name, args=args, distinct=distinct):
            return Call(name, tuple(f(a) for a in args), distinct)
        case Lambda(params=params, body=body):
            return Lambda(params, f(body))
    return e


def expr_sql(e: Expr) -> str:
    """Render an expression back to SQL (for schemas, errors and generated column names)."""
    match e:
        case Lit(value=v):
            return _literal_sql(v)
        case Col(qualifier=q, name=name):
            return f"{q}.{name}" if q else name
        case Deref(expr=x, field=name):
            return f"{expr_sql(x)}->{name}"
        case Index(expr=x, index=i):
            return f"{expr_sql(x)}[{expr_sql(i)}]"
        case Bin(op=op, left=a, right=b):
            return f"({expr_sql(a)} {op} {expr_sql(b)})"
        case Not(expr=x):
            return f"(NOT {expr_sql(x)})"
        case Neg(expr=x):
            return f"-{expr_sql(x)}"
        case IsNull(expr=x, negated=neg):
            return f"({expr_sql(x)} IS {'NOT ' if neg else ''}NULL)"
        case Call(name=name, args=args, distinct=distinct):
            inner = ", ".join(expr_sql(a) for a in args)
            return f"{name}({'DISTINCT ' if distinct else ''}{inner})"
        case Star(qualifier=q):
            return f"{q}.*" if q else "*"
        case Cast(expr=x, type=ty):
            return f"CAST({expr_sql(x)} AS {ty})"
        case Lambda(params=params, body=body):
            return f"({', '.join(params)}) => {expr_sql(body)}"
        case Struct(fields=fields):
            return "STRUCT(" + ", ".join(f"{n}:={expr_sql(x)}" for n, x in fields) + ")"
        case Array(items=items):
            return "ARRAY[" + ", ".join(expr_sql(x) for x in items) + "]"
        case Case(whens=whens, default=default):
            branches = " ".join(f"WHEN {expr_sql(w)} THEN {expr_sql(t)}" for w, t in whens)
            tail = f" ELSE {expr_sql(default)}" if default is not None else ""
            return f"(CASE {branches}{tail} END)"
    return _KIND_NAMES[type(e)]


# what expr_sql writes for the kinds it does not render in full
_KIND_NAMES: dict[type, str] = {
    Distinct: "DISTINCT",
    Between: "BETWEEN",
    In: "IN",
    Like: "LIKE",
    Map: "MAP",
}


def _literal_sql(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)
