"""SQL operators as closures over compiled operands, with ksqlDB's null rules: an operator on
a null operand is null (AND, OR, IS NULL and IS DISTINCT FROM excepted), AND/OR follow
three-valued logic, integer division by zero is an error (null and a processing-log entry),
and a function that fails on a row is null for that row."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from stream_apps.ksqldb.errors import EvalError
from stream_apps.ksqldb.scope import Fn

OnError = Callable[[str], None]

LOGIC = ("AND", "OR")
ARITHMETIC = ("+", "-", "*", "/", "%", "||")
COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")


# -- access ---------------------------------------------------------------------------------------
def column(slot: int, name: str) -> Fn:
    return lambda r: r[slot].get(name) if r[slot] is not None else None


def parameter(slot: int) -> Fn:
    """A lambda parameter: the whole slot."""
    return lambda r: r[slot]


def field_of_slot(slot: int, name: str) -> Fn:
    """``x->NAME`` on a lambda parameter ``x`` (one call, not two)."""
    upper = name.upper()

    def deref_param(r: tuple) -> Any:
        s = r[slot]
        if s is None:
            return None
        v = s.get(name)
        if v is None and upper != name:
            v = s.get(upper)
        return v

    return deref_param


def field(inner: Fn, name: str) -> Fn:
    """``struct->NAME`` (the field as written, else upper-cased)."""
    upper = name.upper()

    def deref(r: tuple) -> Any:
        s = inner(r)
        if s is None:
            return None
        v = s.get(name)
        if v is None and upper != name:
            v = s.get(upper)
        return v

    return deref


def index(arr: Fn, idx: Fn) -> Fn:
    """``a[i]``: an array's element (1-based; negative from the end) or a map's value."""

    def index_(r: tuple) -> Any:
        a, i = arr(r), idx(r)
        if a is None or i is None:
            return None
        if isinstance(a, dict):
            return a.get(i)
        n = len(a)
        j = i - 1 if i > 0 else n + i
        return a[j] if 0 <= j < n else None

    return index_


# -- predicates -----------------------------------------------------------------------------------
def not_(inner: Fn) -> Fn:
    def not_op(r: tuple) -> Any:
        v = inner(r)
        return None if v is None else not v

    return not_op


def neg(inner: Fn) -> Fn:
    def neg_op(r: tuple) -> Any:
        v = inner(r)
        return None if v is None else -v

    return neg_op


def is_null(inner: Fn, negated: bool) -> Fn:
    if negated:
        return lambda r: inner(r) is not None
    return lambda r: inner(r) is None


def distinct(a: Fn, b: Fn, negated: bool) -> Fn:
    """``a IS [NOT] DISTINCT FROM b``: nulls compare as values."""
    return lambda r: (a(r) == b(r)) if negated else (a(r) != b(r))


def between(v: Fn, lo: Fn, hi: Fn, negated: bool) -> Fn:
    def between_op(r: tuple) -> Any:
        x, a, b = v(r), lo(r), hi(r)
        if x is None or a is None or b is None:
            return None
        res = a <= x <= b
        return not res if negated else res

    return between_op


def in_list(v: Fn, items: list[Fn], negated: bool) -> Fn:
    def in_op(r: tuple) -> Any:
        x = v(r)
        if x is None:
            return None
        res = any(x == f(r) for f in items)
        return not res if negated else res

    return in_op


def like(v: Fn, pat: Fn, negated: bool) -> Fn:
    """``v LIKE pattern``: ``%`` any run, ``_`` one character (patterns compiled once)."""
    cache: dict[str, re.Pattern[str]] = {}

    def like_op(r: tuple) -> Any:
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
        return not res if negated else res

    return like_op


def case(operand: Fn | None, whens: list[tuple[Fn, Fn]], default: Fn) -> Fn:
    """``CASE [operand] WHEN ... THEN ... ELSE ... END``: with an operand the first WHEN
    equal to it, else the first WHEN that is true."""

    def case_op(r: tuple) -> Any:
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

    return case_op


# -- binary operators -----------------------------------------------------------------------------
def logic(op: str, a: Fn, b: Fn) -> Fn:
    """AND / OR, three-valued (the right side is not evaluated when the left decides)."""
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

    def or_(r: tuple) -> Any:
        x = a(r)
        if x is True:
            return True
        y = b(r)
        if y is True:
            return True
        return None if x is None or y is None else False

    return or_


def arithmetic(
    op: str, a: Fn, b: Fn, *, concat: bool, int_div: bool, on_error: OnError
) -> Fn:
    """``+ - * / % ||``; ``concat``: ``+`` of strings or ``||``; ``int_div``: ``/`` of two
    integers (truncated; by zero an error). A double divided by zero is ±Infinity or NaN, as
    in Java; ``%`` by zero is null."""

    def arith(r: tuple) -> Any:
        x, y = a(r), b(r)
        if x is None or y is None:
            return None
        if concat:
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


def comparison(op: str, a: Fn, b: Fn) -> Fn:
    """``= <> < <= > >=``, null when either side is."""
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

    def ne(r: tuple) -> Any:
        x, y = a(r), b(r)
        return None if x is None or y is None else x != y

    return ne


# -- conversions and calls ------------------------------------------------------------------------
def cast(inner: Fn, conv: Callable[[Any], Any], type_name: str, on_error: OnError) -> Fn:
    """CAST: null stays null; a value that cannot be converted is an error (null)."""

    def cast_op(r: tuple) -> Any:
        v = inner(r)
        if v is None:
            return None
        try:
            return conv(v)
        except (ValueError, TypeError, OverflowError):
            on_error(f"cannot cast '{v}' to {type_name}")
            return None

    return cast_op


def call(fn: Callable[..., Any], args: list[Fn], on_error: OnError) -> Fn:
    """A scalar function; an EvalError it raises is reported and the value is null."""
    if len(args) == 1:
        f0 = args[0]

        def call1(r: tuple) -> Any:
            try:
                return fn(f0(r))
            except EvalError as exc:
                on_error(str(exc))
                return None

        return call1

    def call_n(r: tuple) -> Any:
        try:
            return fn(*[f(r) for f in args])
        except EvalError as exc:
            on_error(str(exc))
            return None

    return call_n


def geo_distance(fn: Callable[..., Any], args: list[Fn], on_error: OnError) -> Fn:
    """GEO_DISTANCE (the proximity rule's hot call): no argument list, the unit resolved once
    (kilometres when not given)."""
    a0, a1, a2, a3 = args[:4]
    unit_fn = args[4] if len(args) == 5 else (lambda r: "km")

    def geo(r: tuple) -> Any:
        try:
            return fn(a0(r), a1(r), a2(r), a3(r), unit_fn(r))
        except EvalError as exc:
            on_error(str(exc))
            return None

    return geo
