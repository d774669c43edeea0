"""Logic, comparisons, IS NULL and column/field reads compiled to one generated Python function
per expression: the same three-valued rules as the closures of ``operators``, without a Python
call per node (WHERE clauses and FILTER lambdas are mostly these). Any other node inside is
called as its compiled closure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_apps.ksqldb.nodes import Bin, Col, Deref, Expr, IsNull, Lit, Not, expr_sql
from stream_apps.ksqldb.per_row import hoistable
from stream_apps.ksqldb.scope import Fn, Scope

Compile = Callable[[Expr, Scope], Fn]
GENERATED_OPS = ("AND", "OR", "=", "<>", "<", "<=", ">", ">=")


def is_generated(e: Expr) -> bool:
    """Whether ``e`` is compiled by ``generate``."""
    return isinstance(e, IsNull | Not) or (isinstance(e, Bin) and e.op in GENERATED_OPS)


def generate(e: Expr, scope: Scope, compile_any: Compile, compile_node: Compile) -> Fn:
    """``e`` as one generated function of the row ``r``. ``compile_any`` compiles a
    sub-expression hoisted out of a lambda body, ``compile_node`` any node not generated."""
    gen = _Generator(scope, compile_any, compile_node)
    src = f"def _generated(r):\n    return {gen.expr(e)}\n"
    exec(compile(src, f"<ksql {expr_sql(e)[:60]}>", "exec"), gen.env)  # noqa: S102
    return gen.env["_generated"]


class _Generator:
    def __init__(self, scope: Scope, compile_any: Compile, compile_node: Compile) -> None:
        self.scope = scope
        self.compile_any = compile_any
        self.compile_node = compile_node
        self.env: dict[str, Any] = {}
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def ref(self, value: Any) -> str:
        """A name in the generated function's globals bound to ``value``."""
        name = self.fresh("_k")
        self.env[name] = value
        return name

    def expr(self, x: Expr) -> str:
        scope = self.scope
        if hoistable(x, scope):
            return f"{self.ref(self.compile_any(x, scope))}(r)"
        match x:
            case Lit(value=v):
                return self.ref(v)
            case Col(qualifier=q, name=name):
                slot, col, _ = scope.resolve(q, name)
                if not col:
                    return f"r[{slot}]"
                t = self.fresh("_t")
                return f"(None if ({t} := r[{slot}]) is None else {t}.get({self.ref(col)}))"
            case Deref(expr=Col(qualifier=None, name=p), field=fname) if p in scope.params:
                return self.param_field(scope.params[p], fname)
            case IsNull(expr=inner, negated=negated):
                return f"(({self.expr(inner)}) is {'not ' if negated else ''}None)"
            case Not(expr=inner):
                t = self.fresh("_t")
                return f"(None if ({t} := {self.expr(inner)}) is None else not {t})"
            case Bin(op=op, left=left, right=right) if op in GENERATED_OPS:
                return self.binary(op, self.expr(left), self.expr(right))
        return f"{self.ref(self.compile_node(x, scope))}(r)"

    def param_field(self, slot: int, fname: str) -> str:
        """``x->FIELD`` of a lambda parameter (the field as written, else upper-cased)."""
        upper = fname.upper()
        t, v = self.fresh("_t"), self.fresh("_v")
        if upper == fname:
            return f"(None if ({t} := r[{slot}]) is None else {t}.get({self.ref(fname)}))"
        return (
            f"(None if ({t} := r[{slot}]) is None else ({v} if ({v} := "
            f"{t}.get({self.ref(fname)})) is not None else {t}.get({self.ref(upper)})))"
        )

    def binary(self, op: str, left: str, right: str) -> str:
        a, b = self.fresh("_a"), self.fresh("_b")
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
