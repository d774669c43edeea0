"""The /query and /query-stream statements: pull queries (a table's current rows from its
query's state, or a topic read to its end) and transient push queries (``EMIT CHANGES``: a
query runner whose rows go to a callback)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from instore.kafka import make_consumer
from instore.settings import Settings
from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.broker import end_offsets
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.metastore import DeserializationError, Source
from stream_apps.ksqldb.nodes import Col, Deref, Star
from stream_apps.ksqldb.planner import plan_select
from stream_apps.ksqldb.runners import QueryRunner
from stream_apps.ksqldb.scope import PSEUDO, WINDOW_COLS, Fn, Scope, Slot
from stream_apps.ksqldb.state import EngineState

SCAN_TIMEOUT_S = 30


@dataclass
class PullResult:
    query_id: str
    columns: list[tuple[str, sx.SqlType]]
    rows: list[list[Any]] = field(default_factory=list)


def parse_query(text: str) -> sx.Select:
    """The SELECT of a /query request (exactly one statement)."""
    stmts = sx.parse(text)
    if len(stmts) != 1:
        msg = f"Expected exactly one statement, got {len(stmts)}"
        raise StatementError(msg)
    stmt = stmts[0]
    if not isinstance(stmt, sx.Query) or stmt.select is None:
        msg = "The /query endpoint accepts only SELECT statements (and PRINT): " + stmt.text
        raise StatementError(msg)
    return stmt.select


# -- pull queries -------------------------------------------------------------------------------
def check_pull(select: sx.Select) -> None:
    """The clauses a pull query may not have."""
    if select.joins:
        msg = "Pull queries don't support JOIN clauses."
        raise StatementError(msg)
    if select.group_by or select.window is not None:
        msg = "Pull queries don't support GROUP BY clauses."
        raise StatementError(msg)


def pull_compiler(select: sx.Select, src: Source) -> Compiler:
    """A compiler over one row of ``src`` (its columns, the pseudo and window columns)."""
    cols = dict(src.columns)
    for p, t in PSEUDO.items():
        cols.setdefault(p, t)
    if src.windowed:
        cols |= WINDOW_COLS
    return Compiler(Scope([Slot(select.source.alias, src.name, cols)]))


def star_columns(src: Source) -> list[str]:
    """What ``SELECT *`` of a pull query reads: the key columns, the window bounds of a
    windowed source, the value columns."""
    names = [n for n, _ in src.key_columns]
    if src.windowed:
        names += ["WINDOWSTART", "WINDOWEND"]
    return names + [n for n, _ in src.value_columns]


def pull_items(
    select: sx.Select, src: Source, comp: Compiler
) -> list[tuple[str, sx.SqlType, Fn]]:
    """The projection of a pull query: (column name, type, value of a row) per column, ``*``
    expanded to the key columns, the window bounds and the value columns."""
    items: list[tuple[str, sx.SqlType, Fn]] = []
    unnamed = 0
    columns = comp.scope.slots[0].columns
    for it in select.items:
        name = it.alias
        match it.expr:
            case Star():
                items += [(n, columns[n], comp.compile(Col(None, n))) for n in star_columns(src)]
                continue
            case Col(name=column) | Deref(field=column):
                name = name or column
        if name is None:
            name = f"KSQL_COL_{unnamed}"
            unnamed += 1
        items.append((name, comp.infer(it.expr), comp.compile(it.expr)))
    return items


def pull_rows(
    rows: Iterable[dict[str, Any]], where: Fn | None, fns: list[Fn], limit: int | None
) -> list[list[Any]]:
    """The projected rows that pass ``where``, at most ``limit`` of them."""
    out: list[list[Any]] = []
    for row in rows:
        r = (row,)
        if where is not None and where(r) is not True:
            continue
        out.append([f(r) for f in fns])
        if limit is not None and len(out) >= limit:
            break
    return out


def pull(state: EngineState, select: sx.Select) -> PullResult:
    check_pull(select)
    if select.partition_by:
        msg = "Pull queries don't support PARTITION BY clauses."
        raise StatementError(msg)
    src = state.lookup(select.source.name)
    comp = pull_compiler(select, src)
    where = comp.compile(select.where) if select.where is not None else None
    items = pull_items(select, src, comp)
    if src.owner_query and src.owner_query in state.queries and src.kind == "TABLE":
        rows = _materialized(state.queries[src.owner_query])
    else:
        rows = scan(state.settings, src)
    out = pull_rows(rows, where, [f for _, _, f in items], select.limit)
    qid = f"query_{int(time.time() * 1000)}"
    return PullResult(qid, [(n, t) for n, t, _ in items], out)


def _materialized(q: QueryRunner) -> list[dict[str, Any]]:
    """The current rows of a table query (copied while its thread may be updating them)."""
    for _ in range(5):
        try:
            return list(q.core.materialized.values())
        except RuntimeError:
            continue
    return []


def scan(settings: Settings, src: Source) -> list[dict[str, Any]]:
    """Read a topic to its end: the rows of a stream, or the latest row per key of a table."""
    ends = end_offsets(settings, [src.topic])
    consumer = make_consumer(settings)
    latest: dict[Any, dict[str, Any] | None] = {}
    rows: list[dict[str, Any]] = []
    try:
        todo = {k: v for k, v in ends.items() if v > 0}
        if not todo:
            return []
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in todo])
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while todo and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.2):
                if m.error() is not None:
                    continue
                tp = (m.topic() or "", m.partition() or 0)
                if (m.offset() or 0) + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
                _scanned(src, m, latest, rows)
    finally:
        consumer.close()
    if src.kind == "TABLE":
        return [r for r in latest.values() if r is not None]
    return rows


def _scanned(
    src: Source, m: Any, latest: dict[Any, dict[str, Any] | None], rows: list[dict[str, Any]]
) -> None:
    """One record read by ``scan``: appended to a stream's rows, or a table's latest row of
    its key (None for a tombstone); a record that cannot be read is skipped."""
    try:
        key, ws = src.decode_key(m.key())
        if m.value() is None:
            latest[(key, ws)] = None
            return
        row = src.decode_value(m.value() or b"")
    except DeserializationError:
        return
    for (n, _), v in zip(src.key_columns, key, strict=False):
        row[n] = v
    row["ROWTIME"] = m.timestamp()[1]
    row["ROWPARTITION"] = m.partition()
    row["ROWOFFSET"] = m.offset()
    if ws is not None and src.window is not None:
        row["WINDOWSTART"], row["WINDOWEND"] = src.window_bounds(ws)
    if src.kind == "TABLE":
        latest[(key, ws)] = row
    else:
        rows.append(row)


# -- push queries -------------------------------------------------------------------------------
RowCallback = Callable[[list[Any] | None, list[Any] | None], None]


def push(
    state: EngineState, select: sx.Select, props: dict[str, Any], text: str, on_row: RowCallback
) -> tuple[str, list[tuple[str, sx.SqlType]], QueryRunner]:
    """Start a transient push query; ``on_row(values, tombstone_key)`` gets every row."""
    plan = plan_select(select, state.lookup, persistent=False)
    columns = [(c.name, c.type) for c in plan.columns]
    names = [c.name for c in plan.columns]
    key_names = plan.key_names

    def deliver(key: tuple, _ws: int | None, row: dict[str, Any] | None, _rt: int) -> None:
        if row is None:
            on_row(None, [dict(zip(key_names, key, strict=False)).get(n) for n in names])
        else:
            on_row([row.get(n) for n in names], None)

    qid = f"transient_{select.source.name}_{uuid.uuid4().int % 10**19}"
    reset = state.offset_reset(props)
    starts = {}
    if reset != "earliest":
        starts = end_offsets(state.settings, [b.source.topic for b in plan.bindings])
    runner = QueryRunner(
        qid,
        plan,
        state.settings,
        on_row=deliver,
        offset_reset=reset,
        start_offsets=starts,
        limit=select.limit,
        statement=text,
        persistent=False,
        processing_log=state.processing_log,
    )
    state.transient[qid] = runner
    runner.start()
    return qid, columns, runner
