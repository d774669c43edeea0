"""Evaluating once per row what does not change within it. Inside a lambda a sub-expression
that reads no lambda parameter has one value per source row, not one per array element; a
lambda call written twice in a query (one FILTER under several EXPLODEs) is evaluated once per
row. Rows are tuples, evaluated column by column, so the last row (by identity) is enough."""

from __future__ import annotations

from typing import Any

from stream_apps.ksqldb.functions import AGGREGATES
from stream_apps.ksqldb.nodes import Call, Col, Expr, Lambda, Lit, Star, children
from stream_apps.ksqldb.scope import Fn, Scope

LEAVES = (Lit, Col, Lambda, Star)  # nothing inside them to hoist


def invariant_in(e: Expr, scope: Scope) -> bool:
    """True when ``e`` reads no lambda parameter of ``scope`` (and holds no lambda or
    aggregate, whose values do not follow the source rows alone)."""
    match e:
        case Col(qualifier=q, name=name):
            return not (q is None and name in scope.params)
        case Lambda():
            return False
        case Call(name=name) if name in AGGREGATES:
            return False
    return all(invariant_in(x, scope) for x in children(e))


def per_row_slots(fn: Fn, n: int) -> Fn:
    """Remember the result for the last source rows (the first ``n`` slots, by identity): a
    lambda body sees the same row objects for every element of one row's array."""
    last: list[Any] = [None, None, None]
    if n == 1:

        def memo1(r: tuple) -> Any:
            a = r[0]
            if a is last[0] and a is not None:
                return last[2]
            v = fn(r)
            last[0] = a
            last[2] = v
            return v

        return memo1
    if n == 2:
        seen = [False]

        def memo2(r: tuple) -> Any:
            a, b = r[0], r[1]
            if seen[0] and a is last[0] and b is last[1]:
                return last[2]
            v = fn(r)
            last[0] = a
            last[1] = b
            last[2] = v
            seen[0] = True
            return v

        return memo2

    def memo(r: tuple) -> Any:
        key = r[:n]
        prev = last[0]
        if prev is not None and all(x is y for x, y in zip(key, prev, strict=True)):
            return last[2]
        v = fn(r)
        last[0] = key
        last[2] = v
        return v

    return memo


def per_row(fn: Fn) -> Fn:
    """Remember the last row's result (rows are tuples evaluated column by column)."""
    last: list[Any] = [None, None]

    def memo(r: tuple) -> Any:
        if r is last[0]:
            return last[1]
        v = fn(r)
        last[0] = r
        last[1] = v
        return v

    memo.inner = fn  # type: ignore[attr-defined]
    return memo


def hoistable(e: Expr, scope: Scope) -> bool:
    """Inside a lambda, whether ``e`` is worth evaluating once per row rather than once per
    element."""
    return bool(scope.params) and not isinstance(e, LEAVES) and invariant_in(e, scope)
