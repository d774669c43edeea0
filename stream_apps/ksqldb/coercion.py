"""ksqlDB's type rules for comparisons, applied to an expression before it is compiled: a
string literal compared with a number is read as that number (refused when it is not one);
other comparisons of unlike types, and comparisons with NULL, are refused in ksqlDB's words."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.nodes import (
    NULL,
    Bin,
    Cast,
    Col,
    Deref,
    Expr,
    In,
    Lambda,
    Lit,
    expr_sql,
    map_children,
)
from stream_apps.ksqldb.scope import Scope
from stream_apps.ksqldb.sqltypes import SqlType

_NUMERIC = ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")
_OP_NAMES = {
    "=": "EQUAL",
    "<>": "NOT_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_OR_EQUAL",
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_OR_EQUAL",
}
_CERTAIN = Col | Lit | Cast | Deref  # the expressions whose inferred type is exact


def _numeric_literal(text: str, ty: SqlType) -> Any:
    """A string literal read as a number of type ``ty`` (ksqlDB coerces it), or None."""
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        return None
    if ty.name in ("INTEGER", "BIGINT"):
        return int(d) if d == d.to_integral_value() else float(d)
    return float(d)


def coerce_comparisons(e: Expr, comp: Compiler, scope: Scope, clause: str) -> Expr:
    """ksqlDB's type rules for comparisons, applied before compiling: a string literal compared
    with a number is read as that number (refused when it is not one); other comparisons of
    unlike types are refused in ksqlDB's words."""

    def coerce(x: Expr) -> Expr:
        return coerce_comparisons(x, comp, scope, clause)

    match e:
        case Lambda():
            return e
        case Bin(op=op, left=left, right=right) if op in _OP_NAMES:
            a, b = coerce(left), coerce(right)
            if NULL in (a, b):
                sides = ["NULL" if x == NULL else expr_sql(x) for x in (a, b)]
                msg = f"Comparison with NULL not supported: {sides[0]} {op} {sides[1]}"
                raise StatementError(msg)
            if isinstance(a, _CERTAIN) and isinstance(b, _CERTAIN):
                ta, tb = comp.infer(a, scope), comp.infer(b, scope)
                a, b = _coerce_pair(a, ta, b, tb, op, clause)
            return Bin(op, a, b)
        case In(expr=x, items=items, negated=negated):
            target = coerce(x)
            coerced = [coerce(i) for i in items]
            if isinstance(target, _CERTAIN):
                tt = comp.infer(target, scope)
                out = []
                for i in coerced:
                    if isinstance(i, _CERTAIN) and i != NULL:
                        _, i = _coerce_pair(target, tt, i, comp.infer(i, scope), "=", clause, True)
                    out.append(i)
                coerced = out
            return In(target, tuple(coerced), negated)
    return map_children(e, coerce)


def _coerce_pair(
    a: Expr, ta: SqlType, b: Expr, tb: SqlType, op: str, clause: str, in_list: bool = False
) -> tuple[Expr, Expr]:
    na, nb = ta.name in _NUMERIC, tb.name in _NUMERIC
    if na and nb or ta.name == tb.name:
        return a, b
    # a string literal beside a number is read as one
    for num, nty, other, oty, swap in ((a, ta, b, tb, False), (b, tb, a, ta, True)):
        if nty.name in _NUMERIC and oty.name == "STRING" and isinstance(other, Lit):
            v = _numeric_literal(str(other.value), nty)
            if v is None:
                msg = f'invalid input syntax for type {nty}: "{other.value}".'
                raise StatementError(("Invalid Predicate: " if in_list else "") + msg)
            lit = Lit(v)
            return (lit, num) if swap else (num, lit)
    if in_list:
        msg = (
            f"Invalid Predicate: operator does not exist: {ta} = {tb} ({expr_sql(b)})\n"
            "Hint: You might need to add explicit type casts."
        )
        raise StatementError(msg)
    msg = (
        f"Error in {clause} expression: Cannot compare {expr_sql(a)} ({ta}) to {expr_sql(b)} "
        f"({tb}) with {_OP_NAMES[op]}."
    )
    raise StatementError(msg)
