"""A fused EXPLODE: when every table function of a stream query explodes one and the same
array (``EXPLODE(arr)``, ``EXPLODE(TRANSFORM(arr, x => ...))``), the array is evaluated once
per row and each output row is built from its element directly; columns that depend only on
the element are computed (and encoded) once per element."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.functions import SCALARS
from stream_apps.ksqldb.nodes import Call, Col, Expr, Lambda, children
from stream_apps.ksqldb.plan import ExplodeColumn, ExplodePlan, OutputColumn
from stream_apps.ksqldb.scope import Scope
from stream_apps.ksqldb.spatial import SpatialFilter, rename_param


def plan_explode(columns: list[OutputColumn], comp: Compiler, scope: Scope) -> ExplodePlan | None:
    """The fused EXPLODE plan when every table function explodes the same array (see
    ExplodePlan), else None (the generic zip of the table functions' arrays)."""
    array: Expr | None = None
    bodies: dict[int, tuple[str, Expr]] = {}
    for i, c in enumerate(columns):
        if not c.table_function:
            continue
        assert isinstance(c.expr, Call)
        arr = arg = c.expr.args[0]
        match arg:
            case Call(name="TRANSFORM", args=(transformed, Lambda(params=(param,), body=body))):
                arr = transformed
                bodies[i] = (param, body)
        if array is None:
            array = arr
        elif arr != array:
            return None
    assert array is not None
    array_fn = comp.compile(array, scope)
    inner = getattr(array_fn, "inner", None)
    spatial = inner if isinstance(inner, SpatialFilter) else None
    width = scope.width
    out: list[ExplodeColumn] = []
    elem_type = comp.infer(array, scope)
    item = elem_type.params[0] if elem_type.name == "ARRAY" and elem_type.params else None
    for i, c in enumerate(columns):
        if not c.table_function:
            out.append(ExplodeColumn(i, c.name, "row", c.fn))
            continue
        if i not in bodies:
            out.append(ExplodeColumn(i, c.name, "self"))
            continue
        param, body = bodies[i]
        pscope = scope.with_params((param,), [item] if item is not None else [])
        fn = comp.compile(body, pscope)
        if spatial is not None and rename_param(body, param) == spatial.spec.distance_expr:
            # the FILTER computed it for every kept element (fn: when it could not)
            out.append(ExplodeColumn(i, c.name, "distance", fn))
            continue
        outer = _reads_outer(body, param)
        out.append(ExplodeColumn(i, c.name, "mixed" if outer else "elem", fn))
    return ExplodePlan(array_fn, out, spatial, width)


def _reads_outer(e: Expr, param: str) -> bool:
    """Whether a lambda body reads anything but its parameter (columns, aggregates, ...)."""
    match e:
        case Col():
            return e != Col(None, param)
        case Lambda():
            return True  # nested lambdas: not worth the analysis
        case Call(name=name) if name not in SCALARS:
            return True
    return any(_reads_outer(x, param) for x in children(e))


# (key values, window start, row, rowtime): where exploded rows go as dicts
Emit = Callable[[tuple, Any, "dict[str, Any] | None", int], None]
# (key bytes, value bytes, rowtime): a sink that takes records already encoded
EmitEncoded = Callable[["bytes | None", bytes, int], None]
EmitMany = Callable[["bytes | None", list[bytes], int], None]


class ExplodeEmitter:
    """The output rows of one input row of a fused EXPLODE: handed over as dicts, or, once
    bound to a JSON sink (``bind_encoded``), as encoded values built from fragments."""

    def __init__(self, plan: ExplodePlan, names: list[str], key_names: list[str]) -> None:
        self.plan = plan
        self.key_names = key_names
        self.encoded: tuple[Callable[..., Any], EmitEncoded] | None = None
        self._emit_many: EmitMany | None = None
        self._layout(names)

    def bind_encoded(
        self,
        value_names: list[str],
        encode_key: Callable[..., Any],
        emit: EmitEncoded,
        emit_many: EmitMany | None,
    ) -> None:
        """Hand over encoded records: JSON values with ``value_names`` in that order, keys
        encoded by ``encode_key(key_values, window_start)`` (not when a key column is taken
        from the exploded element: rows go out as dicts then)."""
        kinds = {c.name: c.kind for c in self.plan.columns}
        if any(kinds.get(k) != "row" for k in self.key_names):
            return
        self.encoded = (encode_key, emit)
        self._emit_many = emit_many
        self._layout(value_names)
        self._layout_fragments(value_names)
        self._compile_fragment_loop()

    def _layout(self, out: list[str]) -> None:
        ex = self.plan
        self._ecache: dict[int, tuple[Any, list[bytes]]] = {}
        wanted = set(out)
        self._ex_names = list(out)
        self._ex_row = [(c.name, c.fn) for c in ex.columns if c.kind == "row"]
        self._ex_elem = [
            (c.name, c.kind, c.fn)
            for c in ex.columns
            if c.kind in ("elem", "self") and c.name in wanted
        ]
        self._ex_mixed = [(c.name, c.fn) for c in ex.columns if c.kind == "mixed" and c.name in wanted]
        self._ex_dist = [(c.name, c.fn) for c in ex.columns if c.kind == "distance" and c.name in wanted]
        self._ex_pad = (None,) * ex.width

    def _values(self, r: tuple) -> tuple[list[Any], list[Any] | None] | None:
        """The array to explode for row ``r`` and, when the spatial FILTER computed them, the
        distances of its elements."""
        ex = self.plan
        elems = ex.array(r)
        if not elems or not isinstance(elems, list):
            return None
        dist = None
        if ex.spatial is not None:
            last = ex.spatial.last
            if last[0] is r and last[1] is elems:
                dist = last[2]
        return elems, dist

    def emit(self, r: tuple, rowtime: int, emit: Emit) -> None:
        """The output rows of input row ``r`` (to ``emit`` as dicts unless bound encoded)."""
        if self.encoded is not None:
            self._emit_encoded(r, rowtime)
            return
        got = self._values(r)
        if got is None:
            return
        elems, dist = got
        rowvals = {name: fn(r) for name, fn in self._ex_row}  # type: ignore[misc]
        base = {n: rowvals.get(n) for n in self._ex_names}
        pad = self._ex_pad
        key_names = self.key_names
        for i, x in enumerate(elems):
            d = base.copy()
            for name, kind, fn in self._ex_elem:
                d[name] = x if kind == "self" else fn((*pad, x))  # type: ignore[misc]
            rx = (*r, x)
            for name, fn in self._ex_mixed:
                d[name] = fn(rx)  # type: ignore[misc]
            for name, fn in self._ex_dist:
                d[name] = dist[i] if dist is not None else fn(rx)  # type: ignore[misc]
            emit(tuple([d[k] for k in key_names]), None, d, rowtime)

    def _layout_fragments(self, names: list[str]) -> None:
        """The JSON value as fragments: runs of columns with one value per input row, runs of
        columns with one value per array element (encoded once per element, cached) and the
        columns computed per output row. Joined, they are the bytes ``orjson.dumps`` writes for
        the whole object (no whitespace, the same number and string forms)."""
        ex = self.plan
        kinds = {c.name: (c.kind, c.fn) for c in ex.columns}
        segs: list[tuple[str, list[tuple[bytes, str, Any, str]]]] = []
        for pos, name in enumerate(names):
            kind, fn = kinds.get(name, ("row", None))
            group = "row" if kind == "row" else "elem" if kind in ("elem", "self") else "var"
            prefix = (b"{" if pos == 0 else b",") + orjson.dumps(name) + b":"
            item = (prefix, kind, fn, name)
            if group != "var" and segs and segs[-1][0] == group:
                segs[-1][1].append(item)
            else:
                segs.append((group, [item]))
        self._frag_segs = segs
        self._frag_row = [i for i, (g, _) in enumerate(segs) if g == "row"]
        self._frag_elem = [i for i, (g, _) in enumerate(segs) if g == "elem"]
        self._frag_var = [(i, items[0]) for i, (g, items) in enumerate(segs) if g == "var"]
        self._frag_names = names

    def _compile_fragment_loop(self) -> None:
        """One generated function per output layout that turns the exploded elements of a row
        into encoded values: no per-row list copies, loops over columns or calls per column."""
        segs = self._frag_segs
        env: dict[str, Any] = {"dumps": orjson.dumps, "join": b"".join}
        with_dist: list[str] = []  # the spatial FILTER's distances are there
        without: list[str] = []  # they are not: every expression evaluated
        j = 0
        for i, (group, items) in enumerate(segs):
            if group == "row":
                parts = [f"rp[{i}]"] * 2
            elif group == "elem":
                parts = [f"e[{j}]"] * 2
                j += 1
            else:
                prefix, kind, fn, _n = items[0]
                env[f"P{i}"] = prefix
                env[f"F{i}"] = fn
                expr = f"P{i}, dumps(F{i}((*r, x)))"
                parts = [f"P{i}, dumps(dist[n])" if kind == "distance" else expr, expr]
            with_dist.append(parts[0])
            without.append(parts[1])
        env["END"] = b"}" if segs else b"{}"
        with_dist.append("END")
        without.append("END")
        src = (
            "def fragment_loop(elems, dist, r, rp, get, make):\n"
            "    out = []\n"
            "    append = out.append\n"
            "    if dist is not None:\n"
            "        for n, x in enumerate(elems):\n"
            "            h = get(id(x))\n"
            "            if h is None or h[0] is not x:\n"
            "                h = make(x)\n"
            "            e = h[1]\n"
            f"            append(join(({', '.join(with_dist)},)))\n"
            "        return out\n"
            "    for n, x in enumerate(elems):\n"
            "        h = get(id(x))\n"
            "        if h is None or h[0] is not x:\n"
            "            h = make(x)\n"
            "        e = h[1]\n"
            f"        append(join(({', '.join(without)},)))\n"
            "    return out\n"
        )
        exec(compile(src, "<ksql explode layout>", "exec"), env)  # noqa: S102
        self._frag_loop = env["fragment_loop"]

    def _element_parts(self, x: Any) -> tuple[Any, list[bytes]]:
        """The encoded per-element runs of an element, cached by identity (the element belongs
        to a table row's array, which stays the same object until the row changes)."""
        ecache = self._ecache
        if len(ecache) > 65536:
            ecache.clear()
        dumps = orjson.dumps
        pad = self._ex_pad
        segs = self._frag_segs
        parts = [
            b"".join([
                p + dumps(x if kind == "self" else fn((*pad, x)))
                for p, kind, fn, _n in segs[i][1]
            ])
            for i in self._frag_elem
        ]
        hit = (x, parts)
        ecache[id(x)] = hit
        return hit

    def _emit_encoded(self, r: tuple, rowtime: int) -> None:
        got = self._values(r)
        if got is None:
            return
        elems, dist = got
        assert self.encoded is not None
        encode_key, emit_encoded = self.encoded
        dumps = orjson.dumps
        rowvals = {name: fn(r) for name, fn in self._ex_row}  # type: ignore[misc]
        kbytes = encode_key(tuple([rowvals[k] for k in self.key_names]), None)
        segs = self._frag_segs
        rp: list[bytes | None] = [None] * len(segs)
        for i in self._frag_row:
            rp[i] = b"".join([p + dumps(rowvals.get(n)) for p, _k, _f, n in segs[i][1]])
        values = self._frag_loop(elems, dist, r, rp, self._ecache.get, self._element_parts)
        if self._emit_many is not None:
            self._emit_many(kbytes, values, rowtime)
            return
        for v in values:
            emit_encoded(kbytes, v, rowtime)
