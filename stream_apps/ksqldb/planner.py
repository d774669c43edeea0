"""From a SELECT and the metastore to a compiled plan, in the order ksqlDB checks a query: the
sources and their joins (``join_planning``), the WHERE clause, the aggregation clauses, the
projection and its key (``projection``), HAVING, and a fused EXPLODE (``explode``). Validation
errors read like ksqlDB's."""

from __future__ import annotations

from collections.abc import Callable

from stream_apps.ksqldb.coercion import coerce_comparisons
from stream_apps.ksqldb.errors import StatementError, listed
from stream_apps.ksqldb.explode import plan_explode
from stream_apps.ksqldb.expressions import Compiler, contains_aggregate
from stream_apps.ksqldb.join_planning import JoinedSources, plan_sources
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.plan import ErrorRoute, OutputColumn, Plan
from stream_apps.ksqldb.projection import Projection, check_grouped_projection
from stream_apps.ksqldb.scope import WINDOW_COLS, Fn
from stream_apps.ksqldb.statements import Select

DEFAULT_GRACE_MS = 24 * 3600 * 1000  # ksqlDB's default grace when none is given
# aggregates ksqlDB can undo (TableUdaf), the only ones it runs over a table source
TABLE_AGGREGATES = {"COUNT", "SUM", "AVG", "COLLECT_LIST", "HISTOGRAM"}


def plan_select(
    select: Select,
    lookup: Callable[[str], Source],
    *,
    persistent: bool,
    on_error: Callable[[str], None] | None = None,
    sink: str | None = None,
) -> Plan:
    """``lookup(name) -> Source`` (raises for unknown sources); ``sink``: the name of what a
    persistent query writes (for error messages)."""
    errors = ErrorRoute(on_error)
    joined = plan_sources(select, lookup, errors)
    where = _where(select, joined)
    aggregate = _aggregating(select, joined.driver)
    kind = ("stream" if joined.driver.kind == "STREAM" else "table") + (
        "_agg" if aggregate else ""
    )
    scope = joined.scope
    compiler = Compiler(scope, allow_aggregates=aggregate, on_error=errors)
    if aggregate and select.window is not None:
        # WINDOWSTART/WINDOWEND are in slot 0 of the windowed row copy
        scope.slots[0].columns |= WINDOW_COLS
    projection = Projection(
        select, joined, compiler, persistent=persistent, aggregate=aggregate, sink=sink
    )
    columns = projection.columns()
    key_names = projection.key_names(columns)
    if persistent and columns and all(c.is_key for c in columns):
        msg = "The projection contains no value columns."
        raise StatementError(msg)
    group_fns: list[Fn] = []
    if aggregate:
        _check_aggregation(select, columns, compiler, joined)
        group_compiler = Compiler(scope, on_error=errors)
        group_fns = [group_compiler.compile(g) for g in select.group_by]
    if select.having is not None:
        select.having = coerce_comparisons(select.having, compiler, scope, "HAVING")
    having = compiler.compile(select.having, scope) if select.having is not None else None
    window = select.window
    if window is not None and window.grace_ms is None:
        window.grace_ms = DEFAULT_GRACE_MS
    explode = None
    if kind == "stream" and any(c.table_function for c in columns):
        explode = plan_explode(columns, compiler, scope)
    return Plan(
        select,
        joined.bindings,
        joined.joins,
        where,
        columns,
        key_names,
        kind,
        group_fns,
        compiler.aggs,
        having,
        window,
        compiler,
        explode,
        errors,
        joined.synthetic,
        joined.key_slot,
    )


def _where(select: Select, joined: JoinedSources) -> Fn | None:
    if select.where is None:
        return None
    if contains_aggregate(select.where):
        msg = "WHERE clause can not contain aggregate functions; use HAVING."
        raise StatementError(msg)
    select.where = coerce_comparisons(select.where, joined.compiler, joined.scope, "WHERE")
    return joined.compiler.compile(select.where)


def _aggregating(select: Select, driver: Source) -> bool:
    """Whether the query aggregates; its WINDOW, EMIT FINAL, GROUP BY and PARTITION BY
    clauses checked."""
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
    return aggregate


def _check_aggregation(
    select: Select, columns: list[OutputColumn], compiler: Compiler, joined: JoinedSources
) -> None:
    """The projection is grouped; a table source is aggregated only by what ksqlDB can
    undo."""
    check_grouped_projection(select, columns, joined.scope)
    if joined.driver.kind != "TABLE":
        return
    unsupported: list[str] = []
    for agg in compiler.aggs:
        if agg.name not in TABLE_AGGREGATES and agg.name not in unsupported:
            unsupported.append(agg.name)
    if unsupported:
        msg = (
            f"The aggregation function{'s' if len(unsupported) > 1 else ''} "
            f"{listed(unsupported, 'and')} "
            "cannot be applied to a table source, only to a stream source."
        )
        raise StatementError(msg)

