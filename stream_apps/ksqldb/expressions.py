"""Expressions compiled to Python closures over a row.

A row is a tuple of slots (see ``scope``): one dict per source of the query, then the values of
lambda parameters, then (in aggregate queries) the list of aggregate results. Three-valued logic
and null propagation follow ksqlDB: a null comparison is null, WHERE keeps only true.

The ``Compiler`` dispatches on the node (``nodes``); the closures are in ``operators``, logic
and comparisons are generated as Python source (``codegen``), casts are in ``casts``, types in
``inference``, and what a lambda body evaluates once per row in ``per_row``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream_apps.ksqldb import operators as ops
from stream_apps.ksqldb.casts import check_cast, sql_cast, struct_string
from stream_apps.ksqldb.codegen import generate, is_generated
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.functions import AGGREGATES, LAMBDA_FUNCTIONS, SCALARS, TABLE_FUNCTIONS
from stream_apps.ksqldb.inference import infer
from stream_apps.ksqldb.nodes import (
    NULL,
    Array,
    Between,
    Bin,
    Call,
    Case,
    Cast,
    Col,
    Deref,
    Distinct,
    Expr,
    In,
    Index,
    IsNull,
    Lambda,
    Like,
    Lit,
    Map,
    Neg,
    Not,
    Star,
    Struct,
    children,
    expr_sql,
)
from stream_apps.ksqldb.per_row import hoistable, per_row, per_row_slots
from stream_apps.ksqldb.scope import PSEUDO, WINDOW_COLS, Fn, Scope, Slot
from stream_apps.ksqldb.spatial import SpatialFilter, conjuncts, recognise
from stream_apps.ksqldb.sqltypes import BIGINT, INT, STRING, UNKNOWN, SqlType

__all__ = [
    "PSEUDO",
    "WINDOW_COLS",
    "AggCall",
    "Compiler",
    "Fn",
    "Scope",
    "Slot",
    "contains_aggregate",
    "is_table_function",
]

log = logging.getLogger(__name__)

_INTEGRAL = (INT, BIGINT)


@dataclass
class AggCall:
    name: str
    arg: Fn | None  # None for COUNT(*)
    distinct: bool
    expr: Expr
    params: tuple[Any, ...] = ()  # the literal arguments after the first (TOPK's k, ...)


class Compiler:
    """Compiles expressions for one query; collects aggregate calls and table functions."""

    def __init__(
        self,
        scope: Scope,
        *,
        allow_aggregates: bool = False,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.scope = scope
        self.allow_aggregates = allow_aggregates
        self.aggs: list[AggCall] = []
        self.agg_slot = len(scope.slots)
        self._memo: dict[Any, Fn] = {}
        self._invariants: dict[Any, Fn] = {}
        self.on_error = on_error or (lambda msg: log.debug("processing error: %s", msg))

    def report(self, message: str) -> None:
        """What compiled expressions call on an error: the handler in force now (the runner
        sets its own after planning)."""
        self.on_error(message)

    def infer(self, e: Expr, scope: Scope | None = None) -> SqlType:
        return infer(e, scope or self.scope)

    # -- compilation --------------------------------------------------------------------------
    def compile(self, e: Expr, scope: Scope | None = None) -> Fn:
        scope = scope or self.scope
        if hoistable(e, scope):
            # Inside a lambda, a subexpression that reads no lambda parameter has one value per
            # row: computed once per row, not once per element (and once for all its copies).
            key = (e, len(scope.slots))
            hit = self._invariants.get(key)
            if hit is None:
                hit = per_row_slots(self._compile(e, Scope(scope.slots)), len(scope.slots))
                self._invariants[key] = hit
            return hit
        if is_generated(e):
            return generate(e, scope, self.compile, self._compile)
        return self._compile(e, scope)

    def _compile(self, e: Expr, scope: Scope) -> Fn:
        c = self.compile
        match e:
            case Lit(value=v):
                return lambda r: v
            case Col(qualifier=q, name=name):
                slot, col, _ = scope.resolve(q, name)
                return ops.column(slot, col) if col else ops.parameter(slot)
            case Deref(expr=Col(qualifier=None, name=p), field=name) if p in scope.params:
                return ops.field_of_slot(scope.params[p], name)
            case Deref(expr=x, field=name):
                return ops.field(c(x, scope), name)
            case Index(expr=x, index=i):
                return ops.index(c(x, scope), c(i, scope))
            case Bin():
                return self._binary(e, scope)
            case Not(expr=x):
                return ops.not_(c(x, scope))
            case Neg(expr=x):
                return ops.neg(c(x, scope))
            case IsNull(expr=x, negated=negated):
                return ops.is_null(c(x, scope), negated)
            case Distinct(left=a, right=b, negated=negated):
                return ops.distinct(c(a, scope), c(b, scope), negated)
            case Between(expr=x, low=lo, high=hi, negated=negated):
                return ops.between(c(x, scope), c(lo, scope), c(hi, scope), negated)
            case In(expr=x, items=items, negated=negated):
                return ops.in_list(c(x, scope), [c(i, scope) for i in items], negated)
            case Like(expr=x, pattern=p, negated=negated):
                return ops.like(c(x, scope), c(p, scope), negated)
            case Case():
                return self._case(e, scope)
            case Cast():
                return self._cast(e, scope)
            case Struct(fields=fields):
                parts = [(n, c(x, scope)) for n, x in fields]
                return lambda r: {n: f(r) for n, f in parts}
            case Array(items=items):
                fns = [c(x, scope) for x in items]
                return lambda r: [f(r) for f in fns]
            case Map(entries=entries):
                pairs = [(c(k, scope), c(v, scope)) for k, v in entries]
                return lambda r: {kf(r): vf(r) for kf, vf in pairs}
            case Call():
                return self._call(e, scope)
            case Lambda():
                msg = "A lambda can only be an argument of TRANSFORM, FILTER or REDUCE."
                raise StatementError(msg)
            case Star():
                msg = "'*' is only valid as a select item or in COUNT(*)."
                raise StatementError(msg)
        msg = f"Unsupported expression: {expr_sql(e)}"
        raise StatementError(msg)

    def _binary(self, e: Bin, scope: Scope) -> Fn:
        op = e.op
        a = self.compile(e.left, scope)
        b = self.compile(e.right, scope)
        if op in ops.LOGIC:
            return ops.logic(op, a, b)
        if op in ops.ARITHMETIC:
            concat = op == "||" or (
                op == "+" and STRING in (self.infer(e.left, scope), self.infer(e.right, scope))
            )
            int_div = (
                op == "/"
                and self.infer(e.left, scope) in _INTEGRAL
                and self.infer(e.right, scope) in _INTEGRAL
            )
            return ops.arithmetic(op, a, b, concat=concat, int_div=int_div, on_error=self.report)
        if op in ops.COMPARISONS:
            return ops.comparison(op, a, b)
        msg = f"Unsupported operator {op}"
        raise StatementError(msg)

    def _case(self, e: Case, scope: Scope) -> Fn:
        results = [t for _, t in e.whens] + ([e.default] if e.default is not None else [])
        if all(t == NULL for t in results):
            msg = "Invalid Case expression. All case branches have NULL type"
            raise StatementError(msg)
        operand = self.compile(e.operand, scope) if e.operand is not None else None
        whens = [(self.compile(w, scope), self.compile(t, scope)) for w, t in e.whens]
        default = self.compile(e.default, scope) if e.default is not None else (lambda r: None)
        return ops.case(operand, whens, default)

    def _cast(self, e: Cast, scope: Scope) -> Fn:
        from_type = None
        if isinstance(e.expr, Col | Lit | Deref | Array | Map | Struct | Cast) and e.expr != NULL:
            from_type = self.infer(e.expr, scope)
            check_cast(from_type, e.type)
        inner = self.compile(e.expr, scope)
        conv = sql_cast(e.type)
        if e.type.name == "STRING" and from_type is not None and from_type.name == "STRUCT":
            conv = struct_string
        return ops.cast(inner, conv, str(e.type), self.report)

    # -- function calls -------------------------------------------------------------------------
    def _call(self, e: Call, scope: Scope) -> Fn:
        name = e.name
        if name in AGGREGATES:
            return self._aggregate(e, scope)
        if name in TABLE_FUNCTIONS:
            msg = f"Table function {name} can only be used as a top-level select item."
            raise StatementError(msg)
        if name in LAMBDA_FUNCTIONS:
            # The same lambda call written twice in a query (e.g. one FILTER under several
            # EXPLODEs) is evaluated once per row.
            key = (e, tuple(sorted(scope.params.items())))
            hit = self._memo.get(key)
            if hit is None:
                hit = per_row(self._lambda_call(name, e.args, scope))
                self._memo[key] = hit
            return hit
        if name not in SCALARS:
            msg = f"Can't find any functions with the name '{name}'"
            raise StatementError(msg)
        fn = SCALARS[name][0]
        args = [self.compile(a, scope) for a in e.args]
        if name == "GEO_DISTANCE":
            if len(args) not in (4, 5):
                msg = (
                    "Function 'GEO_DISTANCE' does not accept parameters "
                    f"({len(args)} given); expected (lat1, lon1, lat2, lon2[, unit])"
                )
                raise StatementError(msg)
            return ops.geo_distance(fn, args, self.report)
        return ops.call(fn, args, self.report)

    def _aggregate(self, e: Call, scope: Scope) -> Fn:
        """An aggregate call: its argument compiled, the call collected in ``aggs``; its
        value is read from the row's aggregate results."""
        if not self.allow_aggregates:
            msg = f"Aggregate functions can not be used here: {expr_sql(e)}"
            raise StatementError(msg)
        args = e.args
        star = not args or isinstance(args[0], Star)
        arg = None if star else self.compile(args[0], scope)
        name = "COUNT_DISTINCT" if e.name == "COUNT" and e.distinct else e.name
        params = tuple(a.value for a in args[1:] if isinstance(a, Lit))
        if len(params) != len(args[1:]):
            msg = f"Parameters of {name} after the first must be literals: {expr_sql(e)}"
            raise StatementError(msg)
        idx = len(self.aggs)
        self.aggs.append(AggCall(name, arg, e.distinct, e, params))
        slot = self.agg_slot
        return lambda r: r[slot][idx]

    def _lambda_call(self, name: str, args: tuple[Expr, ...], scope: Scope) -> Fn:
        if name == "REDUCE":
            return self._reduce(args, scope)
        match args:
            case (array, Lambda(params=(_,)) as lam):
                pass
            case _:
                msg = f"{name} expects (array, x => expression)"
                raise StatementError(msg)
        arr = self.compile(array, scope)
        at = self.infer(array, scope)
        inner = scope.with_params(
            lam.params, [at.params[0] if at.name == "ARRAY" and at.params else UNKNOWN]
        )
        body = self.compile(lam.body, inner)
        if name == "TRANSFORM":

            def transform(r: tuple) -> Any:
                a = arr(r)
                if a is None:
                    return None
                return [body((*r, x)) for x in a]

            return transform

        def filter_(r: tuple) -> Any:
            a = arr(r)
            if a is None:
                return None
            return [x for x in a if body((*r, x)) is True]

        spatial = self._spatial_filter(lam, arr, filter_, scope, inner)
        return filter_ if spatial is None else spatial

    def _spatial_filter(
        self, lam: Lambda, arr: Fn, exact: Fn, scope: Scope, inner: Scope
    ) -> SpatialFilter | None:
        """A FILTER whose lambda has a radius conjunct (see ``spatial``), run on a grid index;
        the other conjuncts folded into one expression."""
        spec = recognise(lam)
        if spec is None:
            return None
        others = [c for i, c in enumerate(conjuncts(lam.body)) if i != spec.conjunct]
        rest = None
        if others:  # one generated function: true iff every other conjunct is true
            folded = others[0]
            for c in others[1:]:
                folded = Bin("AND", folded, c)
            rest = self.compile(folded, inner)
        lat, lon = self.compile(spec.lat, scope), self.compile(spec.lon, scope)
        return SpatialFilter(spec, arr, lat, lon, rest, exact)

    def _reduce(self, args: tuple[Expr, ...], scope: Scope) -> Fn:
        """REDUCE(array, initial, (acc, x) => ...)"""
        match args:
            case (array, initial, Lambda(params=(_, _)) as lam):
                pass
            case _:
                msg = "REDUCE expects (array, initial, (acc, x) => expression)"
                raise StatementError(msg)
        arr = self.compile(array, scope)
        init = self.compile(initial, scope)
        inner = scope.with_params(lam.params, [self.infer(initial, scope), UNKNOWN])
        body = self.compile(lam.body, inner)

        def reduce_(r: tuple) -> Any:
            a = arr(r)
            acc = init(r)
            if a is None:
                return acc
            for x in a:
                acc = body((*r, acc, x))
            return acc

        return reduce_


def contains_aggregate(e: Expr) -> bool:
    match e:
        case Call(name=name) if name in AGGREGATES:
            return True
    return any(contains_aggregate(x) for x in children(e))


def is_table_function(e: Expr) -> bool:
    return isinstance(e, Call) and e.name in TABLE_FUNCTIONS
