"""The SQL type of an expression, as ksqlDB infers it for schemas and the checks of the planner
(approximate for function results: exact where a statement is refused on a type)."""

from __future__ import annotations

from stream_apps.ksqldb.functions import AGGREGATES, ARRAY_AGGREGATES, SCALARS
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
)
from stream_apps.ksqldb.scope import Scope
from stream_apps.ksqldb.sqltypes import BIGINT, BOOLEAN, DOUBLE, INT, STRING, UNKNOWN, SqlType


def infer(e: Expr, scope: Scope) -> SqlType:
    """The SQL type of ``e`` (approximate for function results; UNKNOWN when it cannot
    tell)."""
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
            return infer(x, scope).field_type(name) or UNKNOWN
        case Index(expr=x):
            t = infer(x, scope)
            return (
                t.params[0] if t.name == "ARRAY" else (t.params[1] if t.name == "MAP" else UNKNOWN)
            )
        case Bin(op=op, left=a, right=b):
            if op in ("AND", "OR", "=", "<>", "<", "<=", ">", ">="):
                return BOOLEAN
            if op == "||":
                return STRING
            ta, tb = infer(a, scope), infer(b, scope)
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
            return infer(x, scope)
        case Cast(type=ty):
            return ty
        case Case(whens=whens, default=default):  # the first branch that is not NULL
            branches = [t for _, t in whens] + ([default] if default is not None else [])
            typed = [t for t in branches if t != NULL]
            return infer(typed[0] if typed else whens[0][1], scope)
        case Struct(fields=fields):
            return SqlType("STRUCT", tuple((n, infer(x, scope)) for n, x in fields))
        case Array(items=items):
            return SqlType("ARRAY", (infer(items[0], scope) if items else STRING,))
        case Map(entries=entries):
            return SqlType(
                "MAP", (STRING, infer(entries[0][1], scope) if entries else STRING)
            )
        case Call():
            return _infer_call(e, scope)
    return UNKNOWN

def _infer_call(e: Call, scope: Scope) -> SqlType:
    name, args = e.name, e.args
    if name in AGGREGATES:
        ret = AGGREGATES[name].return_type
        if ret is not None:
            return ret
        if not args or isinstance(args[0], Star):
            return BIGINT
        at = infer(args[0], scope)
        if name in ARRAY_AGGREGATES or (
            name in ("LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET")
            and any(isinstance(a, Lit) and type(a.value) is int for a in args[1:])
        ):
            return SqlType("ARRAY", (at,))
        if name == "SUM" and at == INT:
            return INT
        return at
    if name == "EXPLODE":
        t = infer(args[0], scope)
        return t.params[0] if t.name == "ARRAY" and t.params else UNKNOWN
    if name in ("TRANSFORM", "FILTER"):
        at = infer(args[0], scope)
        if name == "FILTER":
            return at
        item = at.params[0] if at.name == "ARRAY" and at.params else UNKNOWN
        match args:
            case (_, Lambda(params=params, body=body)):
                return SqlType("ARRAY", (infer(body, scope.with_params(params, [item])),))
        return UNKNOWN
    if name == "REDUCE":
        return infer(args[1], scope)
    if name in SCALARS:
        ret = SCALARS[name][1]
        if ret is not None:
            return ret
        if name in ("ARRAY_MAX", "ARRAY_MIN") and args:
            t = infer(args[0], scope)
            return t.params[0] if t.name == "ARRAY" and t.params else UNKNOWN
        return infer(args[0], scope) if args else UNKNOWN
    return UNKNOWN
