"""From a SELECT and the metastore to a compiled plan: input slots, joins, filter, grouping,
projection and the output key. Validation errors read like ksqlDB's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from stream_apps.ksqldb.errors import StatementError, listed
from stream_apps.ksqldb.expressions import (
    PSEUDO,
    WINDOW_COLS,
    Compiler,
    Fn,
    Scope,
    Slot,
    contains_aggregate,
    is_table_function,
)
from stream_apps.ksqldb.functions import AGGREGATES as AGGREGATE_NAMES
from stream_apps.ksqldb.functions import SCALARS
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.nodes import (
    NULL,
    Bin,
    Call,
    Cast,
    Col,
    Deref,
    Expr,
    In,
    Lambda,
    Lit,
    Star,
    children,
    expr_sql,
    map_children,
)
from stream_apps.ksqldb.spatial import SpatialFilter, rename_param
from stream_apps.ksqldb.sqltypes import BIGINT, SqlType
from stream_apps.ksqldb.syntax import Select, WindowSpec

DEFAULT_GRACE_MS = 24 * 3600 * 1000  # ksqlDB's default grace when none is given


@dataclass
class Binding:
    slot: int
    source: Source
    alias: str
    role: str  # driver | table | stream2


@dataclass
class JoinOp:
    slot: int
    kind: str  # INNER | LEFT | RIGHT | FULL
    left_key: Fn  # over the row so far
    right_key: Fn | None = None  # stream-stream: the right row's key (evaluated on its slot)
    stream: bool = False
    before_ms: int = 0
    after_ms: int = 0
    grace_ms: int | None = None  # None: no GRACE PERIOD in the statement
    foreign_key: bool = False
    right_on: Any = None  # the right side's expression of the ON clause


@dataclass
class OutputColumn:
    name: str
    type: SqlType
    fn: Fn
    is_key: bool = False
    table_function: bool = False
    expr: Expr | None = None


class ErrorRoute:
    """Where every expression of a plan reports a processing error (the runner points it at
    its processing log once the query runs)."""

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def __call__(self, message: str) -> None:
        if self.target is not None:
            self.target(message)


@dataclass
class ExplodeColumn:
    """How one output column of a fused EXPLODE is computed: ``row`` once per input row
    (``fn(r)``), ``elem`` once per array element (``fn((*pad, x))``, cached by element),
    ``mixed`` per output row (``fn((*r, x))``), ``self`` the element itself, ``distance`` the
    value the spatial FILTER computed for the element."""

    index: int
    name: str
    kind: str
    fn: Fn | None = None


@dataclass
class ExplodePlan:
    """All table functions of the SELECT are ``EXPLODE(arr)`` or ``EXPLODE(TRANSFORM(arr, x =>
    ...))`` over one and the same ``arr``: the array is evaluated once per row and each output
    row is built from its element directly (no per-column lists to zip)."""

    array: Fn
    columns: list[ExplodeColumn]
    spatial: SpatialFilter | None
    width: int  # slots of a row before the lambda parameter


@dataclass
class Plan:
    select: Select
    bindings: list[Binding]
    joins: list[JoinOp]
    where: Fn | None
    columns: list[OutputColumn]
    key_names: list[str]
    kind: str  # stream | stream_agg | table | table_agg
    group_fns: list[Fn] = field(default_factory=list)
    aggs: list[Any] = field(default_factory=list)
    having: Fn | None = None
    window: WindowSpec | None = None
    compiler: Compiler | None = None
    explode: ExplodePlan | None = None
    errors: ErrorRoute | None = None
    synthetic_key: bool = False  # the join key is a synthetic column (FULL OUTER, expressions)
    key_slot: int | None = None  # joins: the row's last slot, {"ROWKEY": the join key}

    @property
    def output_kind(self) -> str:
        return "STREAM" if self.kind == "stream" else "TABLE"

    @property
    def has_table_function(self) -> bool:
        return any(c.table_function for c in self.columns)

    @property
    def key_columns(self) -> list[tuple[str, SqlType]]:
        """In the order of the key expressions (GROUP BY, PARTITION BY), not the projection's."""
        by_name = {c.name: c for c in self.columns if c.is_key}
        return [(n, by_name[n].type) for n in self.key_names if n in by_name]

    @property
    def value_columns(self) -> list[tuple[str, SqlType]]:
        return [(c.name, c.type) for c in self.columns if not c.is_key]


def _same(a: Expr, b: Expr, scope: Scope) -> bool:
    if a == b:
        return True
    match a, b:
        case Col(qualifier=qa, name=na), Col(qualifier=qb, name=nb):
            try:
                return scope.resolve(qa, na)[:2] == scope.resolve(qb, nb)[:2]
            except StatementError:
                return False
    return False


def _slots_used(e: Expr, scope: Scope) -> set[int]:
    match e:
        case Col(qualifier=q, name=name):
            try:
                return {scope.resolve(q, name)[0]}
            except StatementError:
                return set()
        case Lambda(params=params, body=body):
            return _slots_used(body, scope.with_params(params, [BIGINT] * len(params)))
    out: set[int] = set()
    for x in children(e):
        out |= _slots_used(x, scope)
    return out


_NUMBERED = re.compile(r"(.*?)(?:_(\d+))?")


class AliasGenerator:
    """ksqlDB's generated column names (``ColumnNames``): ``KSQL_COL_n`` for unaliased
    expressions, a struct field's name for a dereference (``NAME``, ``NAME_1``, ...), never
    a number a source column already uses, and the synthetic join key ``ROWKEY`` (or
    ``ROWKEY_n``)."""

    def __init__(self, column_names: list[str]) -> None:
        self.used: dict[str, set[int]] = {}
        for name in column_names:
            m = _NUMBERED.fullmatch(name)
            assert m is not None
            self.used.setdefault(m[1], set()).add(int(m[2]) if m[2] else 0)
        self.next_index: dict[str, int] = {}

    def next(self, prefix: str) -> str:
        i = self.next_index.get(prefix, 0)
        used = self.used.get(prefix, set())
        while i in used:
            i += 1
        self.next_index[prefix] = i + 1
        if i == 0 and prefix != "KSQL_COL":
            return prefix
        return f"{prefix}_{i}"

    def for_field(self, field_name: str) -> str:
        m = _NUMBERED.fullmatch(field_name)
        assert m is not None
        return self.next(m[1])


def _contains_map(t: SqlType) -> bool:
    if t.name == "MAP":
        return True
    if t.name == "ARRAY":
        return _contains_map(t.params[0])
    if t.name == "STRUCT":
        return any(_contains_map(ft) for _, ft in t.params)
    return False


def _check_join_sources(left: Source, right: Source, a: Expr, b: Expr, scope: Scope) -> None:
    """What ksqlDB refuses about the two sides of a join, in its words."""
    if left.name == right.name:
        msg = f"Can not join '{left.name}' to '{right.name}': self joins are not yet supported."
        raise StatementError(msg)
    if left.windowed != right.windowed:
        win, plain = (left, right) if left.windowed else (right, left)
        assert win.window is not None
        msg = (
            "Can not join windowed source to non-windowed source.\n"
            f"`{win.name}` is {win.window.kind} windowed\n`{plain.name}` is not windowed"
        )
        raise StatementError(msg)
    if left.windowed and right.windowed:
        assert left.window is not None and right.window is not None
        if (left.window.kind == "SESSION") != (right.window.kind == "SESSION"):
            msg = (
                "Incompatible windowed sources.\n"
                f"Left source: {left.window.kind}\nRight source: {right.window.kind}\n"
                "Session windowed sources can only be joined to other session windowed "
                "sources, and may still not result in expected behaviour as session bounds "
                "must be an exact match for the join to work\nHopping and tumbling windowed "
                "sources can only be joined to other hopping and tumbling windowed sources"
            )
            raise StatementError(msg)
        keyed = all(_resolves_to_key(e, src, scope) for e, src in ((a, left), (b, right)))
        if not keyed or left.window.size_ms != right.window.size_ms:
            msg = (
                "Implicit repartitioning of windowed sources is not supported. "
                "See https://github.com/confluentinc/ksql/issues/4385."
            )
            raise StatementError(msg)
        msg = (
            "The local endpoint does not join windowed sources (ksqlDB matches their keys and "
            "windows); run this statement on ksqlDB."
        )
        raise StatementError(msg)
    comp = Compiler(scope, allow_aggregates=False)
    ta, tb = comp.infer(a), comp.infer(b)
    # (inference of function results is approximate: compare what is certain)
    certain = Col | Cast | Deref
    if isinstance(a, certain) and isinstance(b, certain) and str(ta) != str(tb):
        msg = (
            f"Invalid join condition: types don't match. Got {expr_sql(a)}{{{ta}}} = "
            f"{expr_sql(b)}{{{tb}}}."
        )
        raise StatementError(msg)
    if _contains_map(ta):
        name = f"{a.qualifier}_{a.name}" if isinstance(a, Col) and a.qualifier else expr_sql(a)
        msg = (
            "Map keys, including types that contain maps, are not supported as they may lead "
            "to unexpected behavior due to inconsistent serialization. Key column name: "
            f"`{name}`. Column type: {ta}. See https://github.com/confluentinc/ksql/issues/6621 "
            "for more."
        )
        raise StatementError(msg)


def _resolves_to_key(e: Expr, src: Source, scope: Scope) -> bool:
    """Whether ``e`` is a key column of ``src``."""
    if not isinstance(e, Col):
        return False
    try:
        _, name, _ = scope.resolve(e.qualifier, e.name)
    except StatementError:
        return False
    return name in [n for n, _ in src.key_columns]


# aggregates ksqlDB can undo (TableUdaf), the only ones it runs over a table source
TABLE_AGGREGATES = {"COUNT", "SUM", "AVG", "COLLECT_LIST", "HISTOGRAM"}


def _check_grouped_projection(select: Select, columns: list[OutputColumn], scope: Scope) -> None:
    """Every non-aggregate part of the projection is made of GROUP BY expressions."""
    groups = list(select.group_by)

    def grouped(e: Expr) -> bool:
        if any(_same(e, g, scope) for g in groups):
            return True
        match e:
            case Col(name=name):
                return name in ("WINDOWSTART", "WINDOWEND")
            case Call(name=name) if name in AGGREGATE_NAMES:
                return True
            case Lambda():
                return True
        return all(grouped(x) for x in children(e))

    bad: list[str] = []
    for c in columns:
        e = c.expr
        if e is None or c.is_key or grouped(e):
            continue
        bad.append(c.name if isinstance(e, Col) else expr_sql(e))
    if bad:
        listed = ", ".join(bad)
        msg = (
            f"Non-aggregate SELECT expression(s) not part of GROUP BY: {listed}\n"  # noqa: S608
            "Either add the column(s) to the GROUP BY or remove them from the SELECT."
        )
        raise StatementError(msg)


SYSTEM_COLUMNS = ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND")


def _check_reserved_alias(alias: str | None, name: str, e: Expr, persistent: bool) -> None:
    """ksqlDB's Analyzer: a system column name as an alias is refused; selected unaliased
    (SELECT ROWTIME ...) it is refused in a persistent query only."""
    for reserved in SYSTEM_COLUMNS:
        if name.upper() != reserved:
            continue
        if alias is not None and not (isinstance(e, Col) and e.name.upper() == reserved):
            msg = (
                f"`{reserved}` is a reserved column name. You cannot use it as an alias for a "
                "column."
            )
            raise StatementError(msg)
        if persistent:
            msg = f"Reserved column name in select: `{reserved}`. Please remove or alias the column."
            raise StatementError(msg)


_NUMERIC = ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")
_OP_NAMES = {
    "=": "EQUAL",
    "<>": "NOT_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_OR_EQUAL",
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_OR_EQUAL",
}
_CERTAIN = Col | Lit | Cast | Deref


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


def _column_name(e: Expr, scope: Scope) -> str | None:
    """The column ``e`` reads when it is a column reference."""
    return scope.resolve(e.qualifier, e.name)[1] if isinstance(e, Col) else None


def _slot_reader(slot: int) -> Fn:
    def read(r: tuple) -> Any:
        return r[slot]["ROWKEY"]

    return read


def _join_viable_keys(
    pairs: list[tuple[str, Expr, Expr]], canon: Any
) -> list[Expr]:
    """ksqlDB's ``JoinTree.viableKeyColumns`` for a left-deep chain of joins ``(kind, left
    expression, right expression)``: the source columns equal to the result's key. An OUTER
    join's key equals neither side; a column joins the set only when equivalent to the key."""
    equiv: set[Any] = set()
    viable: list[Expr] = []
    for kind, a, b in pairs:
        if kind == "FULL":
            equiv, viable = set(), []
            continue
        keys = {canon(a), canon(b)}
        equiv = keys | equiv if equiv & keys else keys
        seen: list[Any] = []
        out: list[Expr] = []
        for e in [*viable, a, b]:
            c = canon(e)
            if isinstance(e, Col) and c in equiv and c not in seen:
                seen.append(c)
                out.append(e)
        viable = out
    return viable


def plan_select(
    select: Select,
    lookup: Any,
    *,
    persistent: bool,
    on_error: Any = None,
    sink: str | None = None,
) -> Plan:
    """``lookup(name) -> Source`` (raises for unknown sources)."""
    errors = ErrorRoute(on_error)
    on_error = errors
    sources = [(select.source, lookup(select.source.name))]
    for j in select.joins:
        sources.append((j.source, lookup(j.source.name)))
    aliases = [ref.alias for ref, _ in sources]
    if len(set(aliases)) != len(aliases):
        msg = "Each side of the join must have a distinct alias: " + ", ".join(aliases)
        raise StatementError(msg)
    slots = []
    for ref, src in sources:
        cols = dict(src.columns)
        for p, t in PSEUDO.items():
            cols.setdefault(p, t)
        if src.windowed:
            cols |= WINDOW_COLS
        slots.append(Slot(ref.alias, src.name, cols))
    driver = sources[0][1]
    # Each join's criteria, oriented (left: the sources so far; right: the joined source).
    base = Scope(list(slots))
    pairs: list[tuple[str, Expr, Expr]] = []
    for i, j in enumerate(select.joins, start=1):
        on = j.on
        if not (isinstance(on, Bin) and on.op == "="):
            msg = f"Unsupported join expression: {expr_sql(on)}. Only equi-joins are supported."
            raise StatementError(msg)
        a, b = on.left, on.right
        ua, ub = _slots_used(a, base), _slots_used(b, base)
        if ua == {i} and ub <= set(range(i)):
            a, b = b, a
            ua, ub = ub, ua
        if not (ua and ua <= set(range(i)) and ub == {i}):
            if len(ua) == 1 and ua == ub:
                (only,) = ua
                name = sources[only][1].name
                msg = (
                    "Each side of the join must reference exactly one source and not the same "
                    f"source. Left side references `{name}` and right references `{name}`"
                )
                raise StatementError(msg)
            msg = (
                f"Invalid comparison expression '{expr_sql(on)}' in join: each side of the "
                "join must reference exactly one source and not the same source."
            )
            raise StatementError(msg)
        _check_join_sources(sources[0][1], sources[i][1], a, b, base)
        pairs.append((j.kind, a, b))
    # co-partitioning: each join's sides must have as many partitions (a join's result has
    # its right side's), foreign-key joins excepted
    left_parts, left_name = sources[0][1].partitions, sources[0][1].name
    for i in range(1, len(sources)):
        right = sources[i][1]
        fk_like = sources[0][1].kind == "TABLE" and right.kind == "TABLE" and not (
            _resolves_to_key(pairs[i - 1][1], sources[0][1], base)
        )
        declared = sources[0][1].typed and right.typed  # (CSAS/CTAS sinks: as many as needed)
        if not fk_like and declared and right.partitions != left_parts:
            msg = (
                f"Can't join `{left_name}` with `{right.name}` since the number of partitions "
                f"don't match. `{left_name}` partitions = {left_parts}; `{right.name}` "
                f"partitions = {right.partitions}. Please repartition either one so that the "
                "number of partitions match."
            )
            raise StatementError(msg)
        left_parts, left_name = right.partitions, right.name

    def canon(e: Expr) -> Any:
        if isinstance(e, Col):
            try:
                si, name, _ = base.resolve(e.qualifier, e.name)
            except StatementError:
                return e
            return (si, name)
        return e

    # The result of a join is keyed by the join key. ksqlDB names that column after the
    # first source column equal to it that the projection selects; when no column is equal
    # to it (FULL OUTER joins, expressions on both sides) it is the synthetic ROWKEY.
    viable = _join_viable_keys(pairs, canon) if pairs else []
    synthetic = bool(pairs) and not viable
    clash: set[str] = set()
    seen_names: set[str] = set()
    for _, src in sources:
        src_names = set(src.columns)
        clash |= seen_names & src_names
        seen_names |= src_names
    all_names = [n for _, src in sources for n in src.columns]
    synth_name = AliasGenerator(all_names).next("ROWKEY")
    aliasgen = AliasGenerator(all_names)
    key_slot: int | None = None
    if pairs:
        key_slot = len(slots)
        slots.append(Slot("", "", {}))
    scope = Scope(slots)
    bindings = [Binding(0, driver, aliases[0], "driver")]
    joins: list[JoinOp] = []
    compiler = Compiler(scope, allow_aggregates=False, on_error=on_error)
    for i, j in enumerate(select.joins, start=1):
        right = sources[i][1]
        kind, a, b = pairs[i - 1]
        ua = _slots_used(a, scope)
        if synthetic and key_slot is not None:
            slots[key_slot].columns[synth_name] = compiler.infer(a)
        if driver.kind == "STREAM" and right.kind == "STREAM":
            if j.within is None:
                msg = "Stream-Stream joins must have a WITHIN clause specified. None was provided."
                raise StatementError(msg)
            bindings.append(Binding(i, right, aliases[i], "stream2"))
            joins.append(
                JoinOp(
                    i,
                    kind,
                    compiler.compile(a),
                    compiler.compile(b),
                    stream=True,
                    before_ms=j.within[0],
                    after_ms=j.within[1],
                    grace_ms=j.grace_ms,
                    right_on=b,
                )
            )
            continue
        if j.within is not None:
            msg = "A WITHIN clause is only valid for stream-stream joins."
            raise StatementError(msg)
        if driver.kind == "TABLE" and right.kind == "STREAM":
            msg = (
                f"Invalid join order: table-stream joins are not supported; only stream-table "
                f"joins. Got {driver.name} [TABLE] {kind} JOIN {right.name} [STREAM]."
            )
            raise StatementError(msg)
        if kind not in ("INNER", "LEFT") and driver.kind == "STREAM":
            msg = (
                f"Invalid join type: {kind} OUTER JOIN is not supported for stream-table joins "
                f"(only INNER and LEFT). Got {driver.name} [STREAM] {kind} OUTER JOIN "
                f"{right.name} [TABLE]."
            )
            raise StatementError(msg)
        # The right side is a table: the join must be on its primary key.
        pk = [n for n, _ in right.key_columns]
        if not (len(pk) == 1 and _column_name(b, scope) == pk[0]):
            what = "stream-table" if driver.kind == "STREAM" else "table-table"
            msg = (
                f"Invalid join condition: {what} joins require to join on the table's "
                f"primary key. Got {expr_sql(a)} = {expr_sql(b)}."
            )
            raise StatementError(msg)
        fk = False
        if driver.kind == "TABLE":
            if ua != {0}:
                msg = (
                    "The local endpoint supports table-table join conditions on the FROM "
                    "table's columns only."
                )
                raise StatementError(msg)
            dpk = [n for n, _ in driver.key_columns]
            fk = not (len(dpk) == 1 and _column_name(a, scope) == dpk[0])
            if fk and i > 1:
                msg = (
                    "Invalid join condition: foreign-key table-table joins are not supported as "
                    f"part of n-way joins. Got {expr_sql(a)} = {expr_sql(b)}."
                )
                raise StatementError(msg)
            if kind not in ("INNER", "LEFT") and (fk or len(select.joins) != 1):
                msg = (
                    f"Invalid join type: {kind} OUTER JOIN is supported for primary-key "
                    "table-table joins of two tables only (foreign-key joins: INNER and LEFT)."
                )
                raise StatementError(msg)
        bindings.append(Binding(i, right, aliases[i], "table"))
        joins.append(JoinOp(i, kind, compiler.compile(a), foreign_key=fk, right_on=b))

    where = None
    if select.where is not None:
        if contains_aggregate(select.where):
            msg = "WHERE clause can not contain aggregate functions; use HAVING."
            raise StatementError(msg)
        select.where = coerce_comparisons(select.where, compiler, scope, "WHERE")
        where = compiler.compile(select.where)

    aggregate = bool(select.group_by) or any(contains_aggregate(it.expr) for it in select.items)
    if select.window is not None and not aggregate:
        msg = "WINDOW clause requires a GROUP BY clause."
        raise StatementError(msg)
    if select.window is not None and driver.kind == "TABLE":
        msg = "WINDOW clause is not supported on a table source."
        raise StatementError(msg)
    if select.emit_final and (select.window is None or not aggregate):
        msg = "EMIT FINAL is only supported for windowed aggregations."
        raise StatementError(msg)
    if select.emit_final and select.window is not None and select.window.kind == "SESSION":
        msg = "EMIT FINAL is supported for TUMBLING and HOPPING windows only by the local endpoint."
        raise StatementError(msg)
    if aggregate and not select.group_by:
        msg = "Aggregate functions need a GROUP BY clause in the local endpoint."
        raise StatementError(msg)
    if aggregate and select.partition_by:
        msg = "PARTITION BY and GROUP BY can not be used together."
        raise StatementError(msg)
    kind = ("stream" if driver.kind == "STREAM" else "table") + ("_agg" if aggregate else "")
    pcompiler = Compiler(scope, allow_aggregates=aggregate, on_error=on_error)
    if aggregate and select.window is not None:
        pscope = scope  # WINDOWSTART/WINDOWEND are in slot 0 of the windowed row copy
        for s in scope.slots[:1]:
            s.columns |= WINDOW_COLS
    else:
        pscope = scope

    columns: list[OutputColumn] = []
    is_join = bool(pairs)
    for item in select.items:
        if not isinstance(item.expr, Star):
            item.expr = coerce_comparisons(item.expr, pcompiler, pscope, "SELECT")
        e = item.expr
        if isinstance(e, Star):
            if synthetic and e.qualifier is None and key_slot is not None:
                key_ref = Col(None, synth_name)
                col = pcompiler.compile(key_ref, pscope)
                columns.append(
                    OutputColumn(synth_name, slots[key_slot].columns[synth_name], col, expr=key_ref)
                )
            for si, slot in enumerate(scope.slots):
                if si >= len(sources):
                    continue
                if e.qualifier is not None and e.qualifier not in (slot.alias, slot.source):
                    continue
                src = sources[si][1]
                for name, ty in src.columns.items():
                    out = f"{slot.alias}_{name}" if is_join else name
                    col_ref = Col(slot.alias, name)
                    col = pcompiler.compile(col_ref, pscope)
                    columns.append(OutputColumn(out, ty, col, expr=col_ref))
            continue
        tf = is_table_function(e)
        if isinstance(e, Call) and tf:
            if aggregate:
                msg = "Table functions can not be used with aggregations."
                raise StatementError(msg)
            if len(e.args) != 1:
                msg = f"Function '{e.name}' expects one argument."
                raise StatementError(msg)
            fn = pcompiler.compile(e.args[0], pscope)
            ty = pcompiler.infer(e, pscope)
        else:
            fn = pcompiler.compile(e, pscope)
            ty = pcompiler.infer(e, pscope)
        if item.alias:
            name = item.alias
        elif isinstance(e, Col):
            # ksqlDB's AstSanitizer: in a join, a column whose name is in more than one
            # source (and every pseudo column) is named after its source, e.g. L_ID
            si, name, _ = pscope.resolve(e.qualifier, e.name)
            if is_join and si < len(sources) and (name in clash or name in PSEUDO):
                name = f"{scope.slots[si].alias}_{name}"
        elif isinstance(e, Deref):
            name = aliasgen.for_field(e.field)
        else:
            name = aliasgen.next("KSQL_COL")
        _check_reserved_alias(item.alias, name, e, persistent)
        if any(c.name == name for c in columns):
            msg = f"Duplicate value columns found in schema: `{name}` {ty}"
            raise StatementError(msg)
        columns.append(OutputColumn(name, ty, fn, table_function=tf, expr=e))

    # Which projected columns are the output key.
    sink_sql = f"`{sink}`" if sink else "the output"
    fk_join = bool(joins) and joins[-1].foreign_key  # the last join keys the result
    key_exprs: list[Expr]
    join_key = False
    if aggregate:
        key_exprs = list(select.group_by)
    elif select.partition_by:
        key_exprs = list(select.partition_by)
    elif pairs and not fk_join:
        join_key = True
        if synthetic:
            key_exprs = [Col(None, synth_name)]
        else:
            chosen = next(
                (
                    v
                    for v in viable
                    if any(
                        c.expr is not None and not c.table_function and _same(c.expr, v, scope)
                        for c in columns
                    )
                ),
                viable[0],
            )
            key_exprs = [chosen]
    else:
        key_exprs = [Col(aliases[0], n) for n, _ in driver.key_columns]
    key_names: list[str] = []
    if persistent or aggregate:
        for ke in key_exprs:
            hit = next(
                (
                    c
                    for c in columns
                    if c.expr is not None and not c.table_function and _same(c.expr, ke, scope)
                ),
                None,
            )
            if hit is None and select.partition_by and any(
                it.expr == Star(None) for it in select.items
            ):
                # SELECT * ... PARTITION BY x: the star covers the new key column too
                kname = (
                    scope.resolve(ke.qualifier, ke.name)[1]
                    if isinstance(ke, Col)
                    else aliasgen.next("KSQL_COL")
                )
                hit = OutputColumn(
                    kname, pcompiler.infer(ke, pscope), pcompiler.compile(ke, pscope), expr=ke
                )
                columns.insert(0, hit)
            if hit is None:
                if aggregate or select.partition_by:
                    clause = "GROUP BY" if aggregate else "PARTITION BY"
                    msg = (
                        f"Key missing from projection (ie, SELECT). The query used to build "
                        f"{sink_sql} must include the {clause} expression {expr_sql(ke)} in "
                        f"its projection (eg, SELECT {expr_sql(ke)}...)."
                    )
                    raise StatementError(msg)
                if synthetic:
                    msg = (
                        "Key missing from projection (ie, SELECT). See "
                        "https://cnfl.io/2LV7ouS.\nThe query used to build "
                        f"{sink_sql} must include the join expression {synth_name} in its "
                        f"projection (eg, SELECT {synth_name}...).\n{synth_name} was added as a "
                        "synthetic key column because the join criteria did not match any "
                        "source column. This expression must be included in the projection and "
                        "may be aliased. "
                    )
                    raise StatementError(msg)
                if join_key:
                    names = [expr_sql(v) for v in viable]
                    joined = listed(names, "or")
                    what = "join expression" + ("" if len(names) == 1 else "s")
                    msg = (
                        "Key missing from projection (ie, SELECT). \nThe query used to build "
                        f"{sink_sql} must include the {what} {joined} in its projection "
                        f"(eg, SELECT {names[0]}...)."
                    )
                    raise StatementError(msg)
                if not fk_join and persistent:
                    missing = [n for n, _ in driver.key_columns]
                    many = len(missing) > 1
                    missing_sql = " and ".join(missing) if many else missing[0]
                    msg = (
                        f"Key{'s' if many else ''} missing from projection (ie, SELECT). \n"
                        f"The query used to build {sink_sql} must include the key "
                        f"column{'s' if many else ''} {missing_sql} in its projection "
                        f"(eg, SELECT {', '.join(missing)}...)."
                    )
                    raise StatementError(msg)
                if fk_join:
                    key_cols = [n for n, _ in driver.key_columns]
                    msg = (
                        f"Primary key column{'s' if len(key_cols) > 1 else ''} missing from "
                        f"projection (ie, SELECT). The query used to build {sink_sql} must "
                        f"include the primary key column{'s' if len(key_cols) > 1 else ''} "
                        f"{', '.join(key_cols)} of the left table {aliases[0]} in its projection."
                    )
                    raise StatementError(msg)
                continue
            dups = [
                c.name
                for c in columns
                if c.expr is not None and not c.table_function and _same(c.expr, ke, scope)
            ]
            if len(dups) > 1 and isinstance(ke, Col):
                si, kname, _ = scope.resolve(ke.qualifier, ke.name)
                internal = f"{scope.slots[si].alias}_{kname}" if pairs and si < len(sources) else kname
                msg = (
                    f"The projection contains a key column (`{internal}`) more than once, "
                    f"aliased as: {listed(sorted(dups), 'and')}.\nEach key column must "
                    "only be in the projection once. If you intended to copy the key into the "
                    "value, then consider using the AS_VALUE function to indicate which key "
                    "reference should be copied."
                )
                raise StatementError(msg)
            hit.is_key = True
            if join_key and key_slot is not None:
                # the key is the join key itself (not null when the column's side is missing)
                hit.fn = _slot_reader(key_slot)
            key_names.append(hit.name)
    if persistent and columns and all(c.is_key for c in columns):
        msg = "The projection contains no value columns."
        raise StatementError(msg)
    if aggregate:
        _check_grouped_projection(select, columns, scope)
        if driver.kind == "TABLE":
            unsupported: list[str] = []
            for agg in pcompiler.aggs:
                if agg.name not in TABLE_AGGREGATES and agg.name not in unsupported:
                    unsupported.append(agg.name)
            if unsupported:
                msg = (
                    f"The aggregation function{'s' if len(unsupported) > 1 else ''} "
                    f"{listed(unsupported, 'and')} "
                    "cannot be applied to a table source, only to a stream source."
                )
                raise StatementError(msg)
    group_fns: list[Fn] = []
    if aggregate:
        gcomp = Compiler(scope, on_error=on_error)
        group_fns = [gcomp.compile(g) for g in select.group_by]
    if select.having is not None:
        select.having = coerce_comparisons(select.having, pcompiler, pscope, "HAVING")
    having = pcompiler.compile(select.having, pscope) if select.having is not None else None
    window = select.window
    if window is not None and window.grace_ms is None:
        window.grace_ms = DEFAULT_GRACE_MS
    explode = None
    if kind == "stream" and any(c.table_function for c in columns):
        explode = _explode_plan(columns, pcompiler, pscope)
    return Plan(
        select,
        bindings,
        joins,
        where,
        columns,
        key_names,
        kind,
        group_fns,
        pcompiler.aggs,
        having,
        window,
        pcompiler,
        explode,
        errors,
        synthetic,
        key_slot,
    )


def _explode_plan(columns: list[OutputColumn], comp: Compiler, scope: Scope) -> ExplodePlan | None:
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
