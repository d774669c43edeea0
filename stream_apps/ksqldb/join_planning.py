"""The FROM clause and its joins, planned: one slot per source (and one for the join key),
each join's criteria oriented and checked as ksqlDB checks them, the join operations the query
core runs, and which source columns equal the result's key.

Joins are a left-deep chain: join ``i`` joins source ``i`` to the row built from sources
``0..i-1``. A stream joins a stream WITHIN a window, a stream joins a table on the table's
primary key, a table joins a table on its primary key or (foreign-key join) any column of the
FROM table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream_apps.ksqldb.column_names import AliasGenerator
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.inference import infer
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.nodes import Bin, Cast, Col, Deref, Expr, expr_sql
from stream_apps.ksqldb.plan import Binding, ErrorRoute, JoinOp
from stream_apps.ksqldb.scope import PSEUDO, WINDOW_COLS, Fn, Scope, Slot
from stream_apps.ksqldb.sqltypes import SqlType
from stream_apps.ksqldb.statements import JoinClause, Select, SourceRef

# (join kind, left expression, right expression): a join's ON, oriented
Criteria = tuple[str, Expr, Expr]


@dataclass
class JoinedSources:
    """The sources of a SELECT (the FROM source first), their slots and their joins."""

    sources: list[tuple[SourceRef, Source]]
    scope: Scope  # a slot per source, then the join key's slot (joins)
    compiler: Compiler  # the compiler of the join keys and WHERE
    bindings: list[Binding]
    joins: list[JoinOp]
    criteria: list[Criteria]
    viable: list[Expr]  # the source columns equal to the join key (ksqlDB's viable keys)
    synthetic: bool  # no source column equals the join key: it is the column ``synth_name``
    synth_name: str
    key_slot: int | None  # joins: the slot holding {"ROWKEY": the join key}
    clash: set[str]  # the column names of more than one source

    @property
    def driver(self) -> Source:
        return self.sources[0][1]

    @property
    def aliases(self) -> list[str]:
        return [ref.alias for ref, _ in self.sources]

    @property
    def column_names(self) -> list[str]:
        """Every source's columns (generated names avoid their numbers)."""
        return [n for _, src in self.sources for n in src.columns]


def plan_sources(
    select: Select, lookup: Callable[[str], Source], errors: ErrorRoute
) -> JoinedSources:
    """``lookup(name) -> Source`` (raises for unknown sources)."""
    sources = [(select.source, lookup(select.source.name))]
    sources += [(j.source, lookup(j.source.name)) for j in select.joins]
    aliases = [ref.alias for ref, _ in sources]
    if len(set(aliases)) != len(aliases):
        msg = "Each side of the join must have a distinct alias: " + ", ".join(aliases)
        raise StatementError(msg)
    slots = [_slot(ref, src) for ref, src in sources]
    base = Scope(list(slots))
    criteria = [_criteria(i, j, sources, base) for i, j in enumerate(select.joins, start=1)]
    _check_copartitioned(sources, criteria, base)
    # The result of a join is keyed by the join key. ksqlDB names that column after the
    # first source column equal to it that the projection selects; when no column is equal
    # to it (FULL OUTER joins, expressions on both sides) it is the synthetic ROWKEY.
    viable = _join_viable_keys(criteria, _canonical(base)) if criteria else []
    synthetic = bool(criteria) and not viable
    key_slot: int | None = None
    if criteria:
        key_slot = len(slots)
        slots.append(Slot("", "", {}))
    scope = Scope(slots)
    joined = JoinedSources(
        sources,
        scope,
        Compiler(scope, allow_aggregates=False, on_error=errors),
        [Binding(0, sources[0][1], aliases[0], "driver")],
        [],
        criteria,
        viable,
        synthetic,
        "",
        key_slot,
        _clashing_names(sources),
    )
    joined.synth_name = AliasGenerator(joined.column_names).next("ROWKEY")
    for i, j in enumerate(select.joins, start=1):
        _plan_join(joined, i, j, len(select.joins))
    return joined


def _slot(ref: SourceRef, src: Source) -> Slot:
    """A source's columns in a row: its own, the pseudo columns, the window bounds."""
    cols = dict(src.columns)
    for p, t in PSEUDO.items():
        cols.setdefault(p, t)
    if src.windowed:
        cols |= WINDOW_COLS
    return Slot(ref.alias, src.name, cols)


def _clashing_names(sources: list[tuple[SourceRef, Source]]) -> set[str]:
    """The column names of more than one source (named after their source in a join)."""
    clash: set[str] = set()
    seen: set[str] = set()
    for _, src in sources:
        names = set(src.columns)
        clash |= seen & names
        seen |= names
    return clash


def _criteria(
    i: int, j: JoinClause, sources: list[tuple[SourceRef, Source]], base: Scope
) -> Criteria:
    """Join ``i``'s ON, oriented (left: the sources so far; right: the joined source)."""
    on = j.on
    if not (isinstance(on, Bin) and on.op == "="):
        msg = f"Unsupported join expression: {expr_sql(on)}. Only equi-joins are supported."
        raise StatementError(msg)
    a, b = on.left, on.right
    ua, ub = base.slots_read(a), base.slots_read(b)
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
    return j.kind, a, b


def _check_copartitioned(
    sources: list[tuple[SourceRef, Source]], criteria: list[Criteria], base: Scope
) -> None:
    """Each join's sides must have as many partitions (a join's result has its right side's),
    foreign-key joins excepted."""
    driver = sources[0][1]
    left_parts, left_name = driver.partitions, driver.name
    for i in range(1, len(sources)):
        right = sources[i][1]
        fk_like = driver.kind == "TABLE" and right.kind == "TABLE" and not (
            _resolves_to_key(criteria[i - 1][1], driver, base)
        )
        declared = driver.typed and right.typed  # (CSAS/CTAS sinks: as many as needed)
        if not fk_like and declared and right.partitions != left_parts:
            msg = (
                f"Can't join `{left_name}` with `{right.name}` since the number of partitions "
                f"don't match. `{left_name}` partitions = {left_parts}; `{right.name}` "
                f"partitions = {right.partitions}. Please repartition either one so that the "
                "number of partitions match."
            )
            raise StatementError(msg)
        left_parts, left_name = right.partitions, right.name


def _canonical(base: Scope) -> Callable[[Expr], Any]:
    """What makes two key expressions the same: the slot and column a column resolves to."""

    def canon(e: Expr) -> Any:
        if isinstance(e, Col):
            try:
                si, name, _ = base.resolve(e.qualifier, e.name)
            except StatementError:
                return e
            return (si, name)
        return e

    return canon


def _plan_join(joined: JoinedSources, i: int, j: JoinClause, n_joins: int) -> None:
    """Join ``i``'s binding and operation, checked as ksqlDB checks them."""
    scope = joined.scope
    right = joined.sources[i][1]
    kind, a, b = joined.criteria[i - 1]
    ua = scope.slots_read(a)
    if joined.synthetic and joined.key_slot is not None:
        scope.slots[joined.key_slot].columns[joined.synth_name] = joined.compiler.infer(a)
    alias = joined.aliases[i]
    if joined.driver.kind == "STREAM" and right.kind == "STREAM":
        if j.within is None:
            msg = "Stream-Stream joins must have a WITHIN clause specified. None was provided."
            raise StatementError(msg)
        joined.bindings.append(Binding(i, right, alias, "stream2"))
        compile_ = joined.compiler.compile
        joined.joins.append(
            JoinOp(
                i,
                kind,
                compile_(a),
                compile_(b),
                stream=True,
                before_ms=j.within[0],
                after_ms=j.within[1],
                grace_ms=j.grace_ms,
                right_on=b,
            )
        )
        return
    if j.within is not None:
        msg = "A WITHIN clause is only valid for stream-stream joins."
        raise StatementError(msg)
    fk = _check_table_join(joined.driver, right, (kind, a, b), i, ua, n_joins, scope)
    joined.bindings.append(Binding(i, right, alias, "table"))
    joined.joins.append(JoinOp(i, kind, joined.compiler.compile(a), foreign_key=fk, right_on=b))


def _check_table_join(
    driver: Source,
    right: Source,
    criteria: Criteria,
    i: int,
    ua: set[int],
    n_joins: int,
    scope: Scope,
) -> bool:
    """A join whose right side is a table, checked; whether it is a foreign-key join."""
    kind, a, b = criteria
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
    if driver.kind != "TABLE":
        return False
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
    if kind not in ("INNER", "LEFT") and (fk or n_joins != 1):
        msg = (
            f"Invalid join type: {kind} OUTER JOIN is supported for primary-key "
            "table-table joins of two tables only (foreign-key joins: INNER and LEFT)."
        )
        raise StatementError(msg)
    return fk


def join_key_reader(slot: int) -> Fn:
    """The join key of a joined row (not null when the column's side is missing)."""

    def read(r: tuple) -> Any:
        return r[slot]["ROWKEY"]

    return read


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
        _check_windowed_join(left, right, a, b, scope)
    ta, tb = infer(a, scope), infer(b, scope)
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


def _check_windowed_join(left: Source, right: Source, a: Expr, b: Expr, scope: Scope) -> None:
    """Two windowed sources: refused, in ksqlDB's words where ksqlDB refuses them too."""
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


def _resolves_to_key(e: Expr, src: Source, scope: Scope) -> bool:
    """Whether ``e`` is a key column of ``src``."""
    if not isinstance(e, Col):
        return False
    try:
        _, name, _ = scope.resolve(e.qualifier, e.name)
    except StatementError:
        return False
    return name in [n for n, _ in src.key_columns]


def _column_name(e: Expr, scope: Scope) -> str | None:
    """The column ``e`` reads when it is a column reference."""
    return scope.resolve(e.qualifier, e.name)[1] if isinstance(e, Col) else None


def _join_viable_keys(
    criteria: list[Criteria], canon: Callable[[Expr], Any]
) -> list[Expr]:
    """ksqlDB's ``JoinTree.viableKeyColumns`` for a left-deep chain of joins ``(kind, left
    expression, right expression)``: the source columns equal to the result's key. An OUTER
    join's key equals neither side; a column joins the set only when equivalent to the key."""
    equiv: set[Any] = set()
    viable: list[Expr] = []
    for kind, a, b in criteria:
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
