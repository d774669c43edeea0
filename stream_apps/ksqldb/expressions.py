"""Expressions compiled to Python closures over a row.

A row is a tuple of slots: one dict per source of the query (column -> value, with ROWTIME,
ROWPARTITION, ROWOFFSET and the key columns), then the values of lambda parameters, then (in
aggregate queries) the list of aggregate results. Three-valued logic and null propagation follow
ksqlDB: a null comparison is null, WHERE keeps only true.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stream_apps.ksqldb.errors import EvalError, StatementError
from stream_apps.ksqldb.functions import (
    AGGREGATES,
    ARRAY_AGGREGATES,
    LAMBDA_FUNCTIONS,
    SCALARS,
    TABLE_FUNCTIONS,
)
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
from stream_apps.ksqldb.spatial import SpatialFilter, conjuncts, recognise
from stream_apps.ksqldb.sqltypes import BIGINT, BOOLEAN, DOUBLE, INT, STRING, UNKNOWN, SqlType

log = logging.getLogger(__name__)

Fn = Callable[[tuple], Any]
PSEUDO = {"ROWTIME": BIGINT, "ROWPARTITION": INT, "ROWOFFSET": BIGINT}
WINDOW_COLS = {"WINDOWSTART": BIGINT, "WINDOWEND": BIGINT}


@dataclass
class Slot:
    alias: str
    source: str
    columns: dict[str, SqlType]


@dataclass
class Scope:
    slots: list[Slot]
    params: dict[str, int] = field(default_factory=dict)  # lambda parameter -> slot index
    param_types: dict[str, SqlType] = field(default_factory=dict)
    width: int = 0  # slots in use (sources + lambda params)

    def __post_init__(self) -> None:
        self.width = self.width or len(self.slots)

    def with_params(self, names: tuple[str, ...], types: list[SqlType]) -> Scope:
        params = dict(self.params)
        ptypes = dict(self.param_types)
        width = self.width
        for n, t in zip(names, types, strict=False):
            params[n] = width
            ptypes[n] = t
            width += 1
        return Scope(self.slots, params, ptypes, width)

    def resolve(self, qualifier: str | None, name: str) -> tuple[int, str, SqlType]:
        if qualifier is None and name in self.params:
            return self.params[name], "", self.param_types.get(name, UNKNOWN)
        if qualifier is not None:
            for i, s in enumerate(self.slots):
                if qualifier in (s.alias, s.source):
                    col = _find(s.columns, name)
                    if col is None:
                        if name in PSEUDO or name in WINDOW_COLS:
                            return i, name, PSEUDO.get(name) or WINDOW_COLS[name]
                        msg = f"Column '{qualifier}.{name}' cannot be resolved."
                        raise StatementError(msg)
                    return i, col, s.columns[col]
            msg = f"Source '{qualifier}' is not in the FROM clause of the query."
            raise StatementError(msg)
        hits = [(i, _find(s.columns, name)) for i, s in enumerate(self.slots)]
        hits = [(i, c) for i, c in hits if c is not None]
        if len(hits) > 1:
            msg = f"Column '{name}' is ambiguous. Could be any of: " + ", ".join(
                f"{self.slots[i].alias}.{c}" for i, c in hits
            )
            raise StatementError(msg)
        if hits:
            i, c = hits[0]
            assert c is not None
            return i, c, self.slots[i].columns[c]
        if name in PSEUDO or name in WINDOW_COLS:
            return 0, name, PSEUDO.get(name) or WINDOW_COLS[name]
        msg = f"Column '{name}' cannot be resolved."
        raise StatementError(msg)


def _find(columns: dict[str, SqlType], name: str) -> str | None:
    if name in columns:
        return name
    return None


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

    # -- type inference -----------------------------------------------------------------------
    def infer(self, e: Expr, scope: Scope | None = None) -> SqlType:
        scope = scope or self.scope
        match e:
            case Lit(value=v):
                if isinstance(v, bool):
                    return BOOLEAN
                if isinstance(v, int):
                    return INT if -(2**31) <= v < 2**31 else BIGINT
                if isinstance(v, float):
                    return DOUBLE
                return STRING
            case Col(qualifier=q, name=name):
                return scope.resolve(q, name)[2]
            case Deref(expr=x, field=name):
                return self.infer(x, scope).field_type(name) or UNKNOWN
            case Index(expr=x):
                t = self.infer(x, scope)
                return (
                    t.params[0] if t.name == "ARRAY" else (t.params[1] if t.name == "MAP" else UNKNOWN)
                )
            case Bin(op=op, left=a, right=b):
                if op in ("AND", "OR", "=", "<>", "<", "<=", ">", ">="):
                    return BOOLEAN
                if op == "||":
                    return STRING
                ta, tb = self.infer(a, scope), self.infer(b, scope)
                if STRING in (ta, tb) and op == "+":
                    return STRING
                if DOUBLE in (ta, tb) or op == "/" and DOUBLE in (ta, tb):
                    return DOUBLE
                if BIGINT in (ta, tb):
                    return BIGINT
                return ta
            case Not() | IsNull() | Between() | In() | Like() | Distinct():
                return BOOLEAN
            case Neg(expr=x):
                return self.infer(x, scope)
            case Cast(type=ty):
                return ty
            case Case(whens=whens, default=default):  # the first branch that is not NULL
                branches = [t for _, t in whens] + ([default] if default is not None else [])
                typed = [t for t in branches if t != NULL]
                return self.infer(typed[0] if typed else whens[0][1], scope)
            case Struct(fields=fields):
                return SqlType("STRUCT", tuple((n, self.infer(x, scope)) for n, x in fields))
            case Array(items=items):
                return SqlType("ARRAY", (self.infer(items[0], scope) if items else STRING,))
            case Map(entries=entries):
                return SqlType(
                    "MAP", (STRING, self.infer(entries[0][1], scope) if entries else STRING)
                )
            case Call():
                return self._infer_call(e, scope)
        return UNKNOWN

    def _infer_call(self, e: Call, scope: Scope) -> SqlType:
        name, args = e.name, e.args
        if name in AGGREGATES:
            ret = AGGREGATES[name].return_type
            if ret is not None:
                return ret
            if not args or isinstance(args[0], Star):
                return BIGINT
            at = self.infer(args[0], scope)
            if name in ARRAY_AGGREGATES or (
                name in ("LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET")
                and any(isinstance(a, Lit) and type(a.value) is int for a in args[1:])
            ):
                return SqlType("ARRAY", (at,))
            if name == "SUM" and at == INT:
                return INT
            return at
        if name == "EXPLODE":
            t = self.infer(args[0], scope)
            return t.params[0] if t.name == "ARRAY" and t.params else UNKNOWN
        if name in ("TRANSFORM", "FILTER"):
            at = self.infer(args[0], scope)
            if name == "FILTER":
                return at
            item = at.params[0] if at.name == "ARRAY" and at.params else UNKNOWN
            match args:
                case (_, Lambda(params=params, body=body)):
                    return SqlType("ARRAY", (self.infer(body, scope.with_params(params, [item])),))
            return UNKNOWN
        if name == "REDUCE":
            return self.infer(args[1], scope)
        if name in SCALARS:
            ret = SCALARS[name][1]
            if ret is not None:
                return ret
            if name in ("ARRAY_MAX", "ARRAY_MIN") and args:
                t = self.infer(args[0], scope)
                return t.params[0] if t.name == "ARRAY" and t.params else UNKNOWN
            return self.infer(args[0], scope) if args else UNKNOWN
        return UNKNOWN

    # -- compilation --------------------------------------------------------------------------
    def compile(self, e: Expr, scope: Scope | None = None) -> Fn:
        scope = scope or self.scope
        if scope.params and not isinstance(e, _LEAVES) and _invariant_in(e, scope):
            # Inside a lambda, a subexpression that reads no lambda parameter has one value per
            # row: computed once per row, not once per element (and once for all its copies).
            key = (e, len(scope.slots))
            hit = self._invariants.get(key)
            if hit is None:
                hit = _per_row_slots(self._compile(e, Scope(scope.slots)), len(scope.slots))
                self._invariants[key] = hit
            return hit
        if _generated_kind(e):
            return self._generate(e, scope)
        return self._compile(e, scope)

    # -- code generation ------------------------------------------------------------------------
    def _generate(self, e: Expr, scope: Scope) -> Fn:
        """Logic, comparisons, IS NULL and column/field reads as one generated Python function
        (same three-valued rules as the closures below, without a call per node); any other
        node inside is called as its compiled closure."""
        env: dict[str, Any] = {}
        counter = [0]

        def fresh(prefix: str) -> str:
            counter[0] += 1
            return f"{prefix}{counter[0]}"

        def ref(value: Any) -> str:
            name = fresh("_k")
            env[name] = value
            return name

        def gen(x: Expr) -> str:
            if scope.params and not isinstance(x, _LEAVES) and _invariant_in(x, scope):
                return f"{ref(self.compile(x, scope))}(r)"
            match x:
                case Lit(value=v):
                    return ref(v)
                case Col(qualifier=q, name=name):
                    slot, col, _ = scope.resolve(q, name)
                    if not col:
                        return f"r[{slot}]"
                    t = fresh("_t")
                    return f"(None if ({t} := r[{slot}]) is None else {t}.get({ref(col)}))"
                case Deref(expr=Col(qualifier=None, name=p), field=fname) if p in scope.params:
                    slot = scope.params[p]
                    upper = fname.upper()
                    t, v = fresh("_t"), fresh("_v")
                    if upper == fname:
                        return f"(None if ({t} := r[{slot}]) is None else {t}.get({ref(fname)}))"
                    return (
                        f"(None if ({t} := r[{slot}]) is None else ({v} if ({v} := "
                        f"{t}.get({ref(fname)})) is not None else {t}.get({ref(upper)})))"
                    )
                case IsNull(expr=inner, negated=negated):
                    return f"(({gen(inner)}) is {'not ' if negated else ''}None)"
                case Not(expr=inner):
                    t = fresh("_t")
                    return f"(None if ({t} := {gen(inner)}) is None else not {t})"
                case Bin(op=op, left=left_e, right=right_e) if op in _GEN_BIN:
                    a, b = fresh("_a"), fresh("_b")
                    left, right = gen(left_e), gen(right_e)
                    if op == "AND":
                        return (
                            f"(False if ({a} := {left}) is False else (False if ({b} := {right}) "
                            f"is False else (None if {a} is None or {b} is None else True)))"
                        )
                    if op == "OR":
                        return (
                            f"(True if ({a} := {left}) is True else (True if ({b} := {right}) "
                            f"is True else (None if {a} is None or {b} is None else False)))"
                        )
                    pyop = "!=" if op == "<>" else "==" if op == "=" else op
                    # both sides evaluated (as the closures do), then the null check
                    return (
                        f"(None if (({a} := {left}) is None) | (({b} := {right}) is None) "
                        f"else {a} {pyop} {b})"
                    )
            return f"{ref(self._compile(x, scope))}(r)"

        body = gen(e)
        src = f"def _generated(r):\n    return {body}\n"
        exec(compile(src, f"<ksql {expr_sql(e)[:60]}>", "exec"), env)  # noqa: S102
        return env["_generated"]

    def _compile(self, e: Expr, scope: Scope) -> Fn:
        match e:
            case Lit(value=v):
                return lambda r: v
            case Col(qualifier=q, name=name):
                slot, col, _ = scope.resolve(q, name)
                if not col:  # a lambda parameter
                    return lambda r: r[slot]
                return lambda r: r[slot].get(col) if r[slot] is not None else None
            case Deref(expr=Col(qualifier=None, name=p), field=fname) if p in scope.params:
                pslot = scope.params[p]  # x->FIELD on a lambda parameter: one call
                upper = fname.upper()

                def deref_param(r: tuple) -> Any:
                    s = r[pslot]
                    if s is None:
                        return None
                    v = s.get(fname)
                    if v is None and upper != fname:
                        v = s.get(upper)
                    return v

                return deref_param
            case Deref(expr=x, field=fname):
                inner = self.compile(x, scope)
                upper = fname.upper()

                def deref(r: tuple) -> Any:
                    s = inner(r)
                    if s is None:
                        return None
                    v = s.get(fname)
                    if v is None and upper != fname:
                        v = s.get(upper)
                    return v

                return deref
            case Index(expr=x, index=i):
                arr = self.compile(x, scope)
                idx = self.compile(i, scope)

                def index(r: tuple) -> Any:
                    a, i = arr(r), idx(r)
                    if a is None or i is None:
                        return None
                    if isinstance(a, dict):
                        return a.get(i)
                    n = len(a)
                    j = i - 1 if i > 0 else n + i  # 1-based; negative from the end
                    return a[j] if 0 <= j < n else None

                return index
            case Bin():
                return self._binary(e, scope)
            case Not(expr=x):
                inner = self.compile(x, scope)

                def not_(r: tuple) -> Any:
                    v = inner(r)
                    return None if v is None else not v

                return not_
            case Neg(expr=x):
                inner = self.compile(x, scope)

                def neg(r: tuple) -> Any:
                    v = inner(r)
                    return None if v is None else -v

                return neg
            case IsNull(expr=x, negated=negated):
                inner = self.compile(x, scope)
                if negated:
                    return lambda r: inner(r) is not None
                return lambda r: inner(r) is None
            case Distinct(left=left, right=right, negated=negated):
                a, b = self.compile(left, scope), self.compile(right, scope)
                return lambda r: (a(r) == b(r)) if negated else (a(r) != b(r))
            case Between(expr=x, low=low, high=high, negated=negate):
                v, lo, hi = (self.compile(y, scope) for y in (x, low, high))

                def between(r: tuple) -> Any:
                    x, a, b = v(r), lo(r), hi(r)
                    if x is None or a is None or b is None:
                        return None
                    res = a <= x <= b
                    return not res if negate else res

                return between
            case In(expr=x, items=items, negated=negate):
                v = self.compile(x, scope)
                fns = [self.compile(y, scope) for y in items]

                def in_(r: tuple) -> Any:
                    x = v(r)
                    if x is None:
                        return None
                    res = any(x == f(r) for f in fns)
                    return not res if negate else res

                return in_
            case Like(expr=x, pattern=pattern, negated=negate):
                v = self.compile(x, scope)
                pat = self.compile(pattern, scope)
                cache: dict[str, re.Pattern[str]] = {}

                def like(r: tuple) -> Any:
                    x, p = v(r), pat(r)
                    if x is None or p is None:
                        return None
                    rx = cache.get(p)
                    if rx is None:
                        rx = re.compile(
                            "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in p),
                            re.DOTALL,
                        )
                        cache[p] = rx
                    res = rx.fullmatch(str(x)) is not None
                    return not res if negate else res

                return like
            case Case():
                return self._case(e, scope)
            case Cast(expr=x, type=ty):
                from_type = None
                if isinstance(x, Col | Lit | Deref | Array | Map | Struct | Cast) and x != NULL:
                    from_type = self.infer(x, scope)
                    check_cast(from_type, ty)
                return self._cast(self.compile(x, scope), ty, from_type)
            case Struct(fields=fields):
                parts = [(n, self.compile(x, scope)) for n, x in fields]
                return lambda r: {n: f(r) for n, f in parts}
            case Array(items=items):
                fns = [self.compile(x, scope) for x in items]
                return lambda r: [f(r) for f in fns]
            case Map(entries=entries):
                pairs = [(self.compile(a, scope), self.compile(b, scope)) for a, b in entries]
                return lambda r: {ka(r): vb(r) for ka, vb in pairs}
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
        if op == "AND":

            def and_(r: tuple) -> Any:
                x = a(r)
                if x is False:
                    return False
                y = b(r)
                if y is False:
                    return False
                return None if x is None or y is None else True

            return and_
        if op == "OR":

            def or_(r: tuple) -> Any:
                x = a(r)
                if x is True:
                    return True
                y = b(r)
                if y is True:
                    return True
                return None if x is None or y is None else False

            return or_
        if op in ("+", "-", "*", "/", "%", "||"):
            is_str = op == "||" or (
                op == "+" and STRING in (self.infer(e.left, scope), self.infer(e.right, scope))
            )
            int_div = (
                op == "/"
                and self.infer(e.left, scope) in (INT, BIGINT)
                and self.infer(e.right, scope) in (INT, BIGINT)
            )
            on_error = self.report

            def arith(r: tuple) -> Any:
                x, y = a(r), b(r)
                if x is None or y is None:
                    return None
                if is_str:
                    return f"{x}{y}"
                if op == "+":
                    return x + y
                if op == "-":
                    return x - y
                if op == "*":
                    return x * y
                if op == "/":
                    if y == 0:
                        if int_div:
                            on_error("division by zero")
                            return None
                        return math.copysign(math.inf, x) if x else math.nan
                    return int(x / y) if int_div else x / y
                if y == 0:
                    return None
                return (
                    math.fmod(x, y)
                    if isinstance(x, float) or isinstance(y, float)
                    else int(math.fmod(x, y))
                )

            return arith
        if op == "<=":

            def le(r: tuple) -> Any:
                x, y = a(r), b(r)
                return None if x is None or y is None else x <= y

            return le
        if op == "<":

            def lt(r: tuple) -> Any:
                x, y = a(r), b(r)
                return None if x is None or y is None else x < y

            return lt
        if op == ">=":

            def ge(r: tuple) -> Any:
                x, y = a(r), b(r)
                return None if x is None or y is None else x >= y

            return ge
        if op == ">":

            def gt(r: tuple) -> Any:
                x, y = a(r), b(r)
                return None if x is None or y is None else x > y

            return gt
        if op == "=":

            def eq(r: tuple) -> Any:
                x, y = a(r), b(r)
                return None if x is None or y is None else x == y

            return eq
        if op == "<>":

            def ne(r: tuple) -> Any:
                x, y = a(r), b(r)
                return None if x is None or y is None else x != y

            return ne
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

        def case(r: tuple) -> Any:
            if operand is not None:
                v = operand(r)
                for w, t in whens:
                    if v is not None and v == w(r):
                        return t(r)
                return default(r)
            for w, t in whens:
                if w(r) is True:
                    return t(r)
            return default(r)

        return case

    def _cast(self, inner: Fn, ty: SqlType, from_type: SqlType | None = None) -> Fn:
        on_error = self.report
        conv = sql_cast(ty)
        if ty.name == "STRING" and from_type is not None and from_type.name == "STRUCT":
            conv = struct_string

        def cast(r: tuple) -> Any:
            v = inner(r)
            if v is None:
                return None
            try:
                return conv(v)
            except (ValueError, TypeError, OverflowError):
                on_error(f"cannot cast '{v}' to {ty}")
                return None

        return cast


    def _call(self, e: Call, scope: Scope) -> Fn:
        name, args, distinct = e.name, e.args, e.distinct
        if name in AGGREGATES:
            if not self.allow_aggregates:
                msg = f"Aggregate functions can not be used here: {expr_sql(e)}"
                raise StatementError(msg)
            star = not args or isinstance(args[0], Star)
            arg = None if star else self.compile(args[0], scope)
            if name == "COUNT" and distinct:
                name = "COUNT_DISTINCT"
            params = tuple(a.value for a in args[1:] if isinstance(a, Lit))
            if len(params) != len(args[1:]):
                msg = f"Parameters of {name} after the first must be literals: {expr_sql(e)}"
                raise StatementError(msg)
            idx = len(self.aggs)
            self.aggs.append(AggCall(name, arg, distinct, e, params))
            slot = self.agg_slot
            return lambda r: r[slot][idx]
        if name in TABLE_FUNCTIONS:
            msg = f"Table function {name} can only be used as a top-level select item."
            raise StatementError(msg)
        if name in LAMBDA_FUNCTIONS:
            # The same lambda call written twice in a query (e.g. one FILTER under several
            # EXPLODEs) is evaluated once per row.
            key = (e, tuple(sorted(scope.params.items())))
            hit = self._memo.get(key)
            if hit is None:
                hit = _per_row(self._lambda_call(name, args, scope))
                self._memo[key] = hit
            return hit
        if name not in SCALARS:
            msg = f"Can't find any functions with the name '{name}'"
            raise StatementError(msg)
        fn = SCALARS[name][0]
        compiled = [self.compile(a, scope) for a in args]
        on_error = self.report
        if name == "GEO_DISTANCE" and len(compiled) not in (4, 5):
            msg = (
                "Function 'GEO_DISTANCE' does not accept parameters "
                f"({len(compiled)} given); expected (lat1, lon1, lat2, lon2[, unit])"
            )
            raise StatementError(msg)
        if name == "GEO_DISTANCE":
            # the proximity rule's hot call: no argument list, the unit resolved once
            a0, a1, a2, a3 = compiled[:4]
            unit_fn = compiled[4] if len(compiled) == 5 else (lambda r: "km")

            def geo(r: tuple) -> Any:
                try:
                    return fn(a0(r), a1(r), a2(r), a3(r), unit_fn(r))
                except EvalError as exc:
                    on_error(str(exc))
                    return None

            return geo
        if len(compiled) == 1:
            f0 = compiled[0]

            def call1(r: tuple) -> Any:
                try:
                    return fn(f0(r))
                except EvalError as exc:
                    on_error(str(exc))
                    return None

            return call1

        def call(r: tuple) -> Any:
            try:
                return fn(*[f(r) for f in compiled])
            except EvalError as exc:
                on_error(str(exc))
                return None

        return call

    def _lambda_call(self, name: str, args: tuple[Expr, ...], scope: Scope) -> Fn:
        if name in ("TRANSFORM", "FILTER"):
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

            spec = recognise(lam)
            if spec is not None:
                others = [c for i, c in enumerate(conjuncts(lam.body)) if i != spec.conjunct]
                rest = None
                if others:  # one generated function: true iff every other conjunct is true
                    folded = others[0]
                    for c in others[1:]:
                        folded = Bin("AND", folded, c)
                    rest = self.compile(folded, inner)
                return SpatialFilter(
                    spec,
                    arr,
                    self.compile(spec.lat, scope),
                    self.compile(spec.lon, scope),
                    rest,
                    filter_,
                )
            return filter_
        # REDUCE(array, initial, (acc, x) => ...)
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


_LEAVES = (Lit, Col, Lambda, Star)
_GEN_BIN = ("AND", "OR", "=", "<>", "<", "<=", ">", ">=")


def _generated_kind(e: Expr) -> bool:
    return isinstance(e, IsNull | Not) or (isinstance(e, Bin) and e.op in _GEN_BIN)


def _invariant_in(e: Expr, scope: Scope) -> bool:
    """True when ``e`` reads no lambda parameter of ``scope`` (and holds no lambda or
    aggregate, whose values do not follow the source rows alone)."""
    match e:
        case Col(qualifier=q, name=name):
            return not (q is None and name in scope.params)
        case Lambda():
            return False
        case Call(name=name) if name in AGGREGATES:
            return False
    return all(_invariant_in(x, scope) for x in children(e))


def _per_row_slots(fn: Fn, n: int) -> Fn:
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


def _per_row(fn: Fn) -> Fn:
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



def contains_aggregate(e: Expr) -> bool:
    match e:
        case Call(name=name) if name in AGGREGATES:
            return True
    return any(contains_aggregate(x) for x in children(e))


def is_table_function(e: Expr) -> bool:
    return isinstance(e, Call) and e.name in TABLE_FUNCTIONS
