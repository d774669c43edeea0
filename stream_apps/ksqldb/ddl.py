"""The statements that change the metastore or write to a topic: CREATE STREAM/TABLE (over a
topic, or AS SELECT with its persistent query), INSERT INTO ... SELECT, INSERT INTO ...
VALUES (and the /inserts-stream rows), DROP and TERMINATE.

Each returns its REST entity. With ``replay`` False (a statement run now, not one read back
from the command topic) a statement that changes the metastore is appended to the command
topic.
"""

from __future__ import annotations

import logging
from typing import Any

from instore.kafka import make_producer
from stream_apps.ksqldb import entities
from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.broker import end_offsets
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.metastore import (
    Source,
    check_column_names,
    check_key_format,
    formats,
    sink_key_format,
    source_window,
    wrap_single_value,
)
from stream_apps.ksqldb.nodes import expr_sql
from stream_apps.ksqldb.plan import Plan
from stream_apps.ksqldb.planner import plan_select
from stream_apps.ksqldb.runners import QueryRunner
from stream_apps.ksqldb.scope import Scope, Slot
from stream_apps.ksqldb.state import EngineState

log = logging.getLogger(__name__)


def _status(
    state: EngineState,
    entity_type: str,
    name: str,
    action: str,
    message: str,
    query_id: str | None = None,
) -> dict[str, Any]:
    """A statement's ``currentStatus``, kept for /status under its command id."""
    state.seq += 1
    command_id = f"{entity_type}/`{name}`/{action}"
    state.command_status[command_id] = {"status": "SUCCESS", "message": message}
    return entities.current_status(state.seq, command_id, message, query_id)


def _record(
    state: EngineState, stmt: sx.Statement, props: dict[str, Any], query_id: str | None = None
) -> None:
    state.commands.append(stmt.text, props, query_id)


# -- CREATE STREAM/TABLE over a topic -------------------------------------------------------------
def create_source(
    state: EngineState, stmt: sx.CreateSource, props: dict[str, Any], replay: bool
) -> dict[str, Any]:
    kind = stmt.kind
    if stmt.name in state.sources and not stmt.or_replace:
        if stmt.if_not_exists:
            return _status(
                state,
                kind.lower(),
                stmt.name,
                "create",
                f"Cannot add {kind.lower()} `{stmt.name}`: A {kind.lower()} "
                "with the same name already exists.",
            )
        existing = state.sources[stmt.name]
        msg = (
            f"Cannot add {kind.lower()} '{stmt.name}': A {existing.kind.lower()} with the "
            "same name already exists"
        )
        raise StatementError(msg)
    keys, values = _declared_columns(stmt)
    p = stmt.props
    topic = p.get("KAFKA_TOPIC")
    if not topic:
        msg = (
            'Missing required property "KAFKA_TOPIC" for the '
            + kind.lower()
            + " (and no topic with the default name exists)."
        )
        raise StatementError(msg)
    key_format, value_format = formats(p)
    check_key_format(key_format, keys)
    ts_col = _timestamp_column(p.get("TIMESTAMP"), [c.name for c in stmt.columns])
    partitions = p.get("PARTITIONS")
    replicas = int(p.get("REPLICAS") or 1)
    nparts = state.admin.ensure(
        str(topic), int(partitions) if partitions else None, replicas, compact=False, kind=kind
    )
    state.sources[stmt.name] = Source(
        stmt.name,
        kind,
        str(topic),
        keys,
        values,
        key_format,
        value_format,
        nparts,
        replicas,
        ts_col,
        source_window(p),
        stmt.text,
        read_only=stmt.source,
        wrap_single=wrap_single_value(p, values),
    )
    if not replay:
        _record(state, stmt, props)
    return _status(state, kind.lower(), stmt.name, "create", f"{kind.capitalize()} created")


def _declared_columns(
    stmt: sx.CreateSource,
) -> tuple[list[tuple[str, sx.SqlType]], list[tuple[str, sx.SqlType]]]:
    """(key columns, value columns) of a CREATE's column list, checked as ksqlDB does."""
    if not stmt.columns:
        msg = f"The statement does not define any columns. Got: {stmt.text}"
        raise StatementError(msg)
    names = [c.name for c in stmt.columns]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        msg = f"Duplicate column names: `{dup}`"
        raise StatementError(msg)
    check_column_names(names)
    keys = [(c.name, c.type) for c in stmt.columns if c.key]
    values = [(c.name, c.type) for c in stmt.columns if not c.key and not c.headers]
    if stmt.kind == "TABLE" and not keys:
        msg = "Tables require a PRIMARY KEY. Please define the PRIMARY KEY."
        raise StatementError(msg)
    return keys, values


def _timestamp_column(ts_col: Any, names: list[str]) -> str | None:
    """The WITH clause's TIMESTAMP column, as declared (unquoted names are upper case)."""
    if ts_col is None:
        return None
    ts_col = str(ts_col).upper() if str(ts_col).upper() in names else str(ts_col)
    if ts_col not in names:
        msg = (
            "The TIMESTAMP column set in the WITH clause does not exist in the "
            f"schema: '{ts_col}'"
        )
        raise StatementError(msg)
    return str(ts_col)


# -- CREATE STREAM/TABLE AS SELECT ----------------------------------------------------------------
def create_as(
    state: EngineState,
    stmt: sx.CreateAs,
    props: dict[str, Any],
    replay: bool,
    query_id: str | None,
) -> dict[str, Any]:
    kind = stmt.kind
    if stmt.name in state.sources:
        if stmt.if_not_exists:
            return _status(
                state,
                kind.lower(),
                stmt.name,
                "create",
                f"Cannot add {kind.lower()} `{stmt.name}`: already exists.",
            )
        if not stmt.or_replace:
            existing = state.sources[stmt.name]
            msg = (
                f"Cannot add {kind.lower()} '{stmt.name}': A {existing.kind.lower()} with "
                "the same name already exists"
            )
            raise StatementError(msg)
    assert stmt.select is not None
    plan = plan_select(stmt.select, state.lookup, persistent=True, sink=stmt.name)
    if plan.output_kind != kind:
        produced = plan.output_kind
        msg = (
            f"Invalid result type. Your SELECT query produces a {produced}. Please use "
            f"CREATE {produced} AS SELECT statement instead."
        )
        raise StatementError(msg)
    topic, key_format, value_format, partitions = _sink_formats(stmt, plan)
    if stmt.or_replace and stmt.name in state.sources:
        old = state.sources[stmt.name]
        if old.owner_query and old.owner_query in state.queries:
            state.queries.pop(old.owner_query).stop()
    p = stmt.props
    nparts = state.admin.ensure(
        topic, partitions, int(p.get("REPLICAS") or 1), compact=kind == "TABLE", kind=kind
    )
    sink = Source(
        stmt.name,
        kind,
        topic,
        plan.key_columns,
        plan.value_columns,
        key_format,
        value_format,
        nparts,
        1,
        str(p["TIMESTAMP"]).upper() if p.get("TIMESTAMP") else None,
        plan.window,
        stmt.text,
        typed=False,
        wrap_single=wrap_single_value(p, plan.value_columns),
    )
    prefix = "CSAS" if kind == "STREAM" else "CTAS"
    qid = query_id or f"{prefix}_{stmt.name}_{state.seq + 1}"
    runner = _start_persistent(state, qid, plan, sink, props, stmt.text)
    sink.owner_query = qid
    state.sources[stmt.name] = sink
    if not replay:
        _record(state, stmt, props, qid)
    return _status(
        state, kind.lower(), stmt.name, "create", f"Created query with ID {runner.id}", runner.id
    )


def _sink_formats(stmt: sx.CreateAs, plan: Plan) -> tuple[str, str, str, int]:
    """(topic, key format, value format, partitions) of the sink of a CREATE ... AS SELECT."""
    driver = plan.bindings[0].source
    p = stmt.props
    topic = str(p.get("KAFKA_TOPIC") or stmt.name)
    _, value_format = formats(p, driver.key_format, driver.value_format)
    key_format = sink_key_format(p, driver.key_format, plan.key_columns)
    check_key_format(key_format, plan.key_columns)
    return topic, key_format, value_format, int(p.get("PARTITIONS") or driver.partitions)


def _start_persistent(
    state: EngineState, qid: str, plan: Plan, sink: Source, props: dict[str, Any], text: str
) -> QueryRunner:
    reset = state.offset_reset(props)
    starts = {}
    if reset != "earliest":
        starts = end_offsets(state.settings, [b.source.topic for b in plan.bindings])
    spec = {
        "query_id": qid,
        "settings": state.settings.model_dump(),
        "sources": dict(state.sources),
        "sink": sink,
        "statement": text,
        "offset_reset": reset,
        "start_offsets": starts,
        "processing_log_topic": state.processing_log_topic,
    }
    runner = QueryRunner(
        qid,
        plan,
        state.settings,
        sink=sink,
        offset_reset=reset,
        start_offsets=starts,
        statement=text,
        processing_log=state.processing_log,
        workers=state.stream_threads(props),
        worker_spec=spec,
    )
    state.queries[qid] = runner
    runner.start()
    log.info("started persistent query %s", qid)
    return runner


# -- INSERT -------------------------------------------------------------------------------------
def insert_into(
    state: EngineState,
    stmt: sx.InsertInto,
    props: dict[str, Any],
    replay: bool,
    query_id: str | None,
) -> dict[str, Any]:
    target = state.lookup(stmt.target)
    if target.kind != "STREAM":
        msg = f"INSERT INTO can only be used to insert into a stream. {target.name} is a table."
        raise StatementError(msg)
    assert stmt.select is not None
    plan = plan_select(stmt.select, state.lookup, persistent=True, sink=stmt.target)
    if plan.output_kind != "STREAM":
        msg = "INSERT INTO can only be used with a query that produces a stream."
        raise StatementError(msg)
    want = [n for n, _ in target.key_columns + target.value_columns]
    got = [n for n, _ in plan.key_columns + plan.value_columns]
    if sorted(want) != sorted(got):
        msg = (
            f"Incompatible schema between results and sink. Result schema is "
            f"{got}, but the sink schema is {want}."
        )
        raise StatementError(msg)
    qid = query_id or stmt.query_id or f"INSERTQUERY_{state.seq + 1}"
    _start_persistent(state, qid, plan, target, props, stmt.text)
    if not replay:
        _record(state, stmt, props, qid)
    return _status(state, "stream", target.name, "create", f"Created query with ID {qid}", qid)


def insert_values(state: EngineState, stmt: sx.InsertValues) -> dict[str, Any]:
    target = state.lookup(stmt.target)
    if target.owner_query is not None and target.kind == "TABLE":
        msg = f"Cannot insert values into read-only table: {target.name}"
        raise StatementError(msg)
    cols = stmt.columns or [n for n, _ in target.key_columns + target.value_columns]
    if len(cols) != len(stmt.values):
        msg = (
            f"Expected number columns and values to match: {cols}, "
            f"{[expr_sql(v) for v in stmt.values]}"
        )
        raise StatementError(msg)
    comp = Compiler(Scope([Slot("", "", {})]))
    row: dict[str, Any] = {}
    rowtime = None
    allcols = target.columns
    for c, e in zip(cols, stmt.values, strict=False):
        name = c if c in allcols else c.upper() if c.upper() in allcols else c
        v = comp.compile(e)(({},))
        if name == "ROWTIME":
            rowtime = int(v)
            continue
        if name not in allcols:
            msg = f"Column name {c} does not exist."
            raise StatementError(msg)
        row[name] = v
    key = tuple(row.get(n) for n, _ in target.key_columns)
    producer = make_producer(state.settings)
    kwargs: dict[str, Any] = {"key": target.encode_key(key), "value": target.encode_value(row)}
    if rowtime is not None:
        kwargs["timestamp"] = rowtime
    producer.produce(target.topic, **kwargs)
    producer.flush(10)
    return entities.inserted(target.name)


def insert_rows(
    state: EngineState, target: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The /inserts-stream endpoint: write JSON rows to a stream; one ack per row."""
    src = state.lookup(target)
    if src.kind != "STREAM":
        msg = f"Cannot insert into a table: {target}"
        raise StatementError(msg)
    cols = src.columns
    upper = {n.upper(): n for n in cols}
    producer = make_producer(state.settings)
    acks: list[dict[str, Any]] = []
    for seq, obj in enumerate(rows):
        row: dict[str, Any] = {}
        bad = [k for k in obj if k not in cols and k.upper() not in upper]
        if bad:
            acks.append({"status": "error", "seq": seq, "error_code": 40000,
                         "message": f"Column name {bad[0]} does not exist."})
            continue
        for k, v in obj.items():
            row[k if k in cols else upper[k.upper()]] = v
        key = tuple(row.get(n) for n, _ in src.key_columns)
        producer.produce(src.topic, key=src.encode_key(key), value=src.encode_value(row))
        acks.append({"status": "ok", "seq": seq})
    producer.flush(10)
    return acks


# -- DROP, TERMINATE ----------------------------------------------------------------------------
def drop(
    state: EngineState, stmt: sx.Drop, props: dict[str, Any], replay: bool
) -> dict[str, Any]:
    src = state.sources.get(stmt.name)
    if src is None:
        if stmt.if_exists:
            return _status(
                state,
                stmt.kind.lower(),
                stmt.name,
                "drop",
                f"Source `{stmt.name}` does not exist.",
            )
        msg = f"{stmt.kind.capitalize()} {stmt.name} does not exist."
        raise StatementError(msg)
    if src.kind != stmt.kind:
        msg = f"Incompatible data source type is {src.kind}, but statement was DROP {stmt.kind}"
        raise StatementError(msg)
    readers, writers = state.readers_writers(stmt.name)
    sinks = sorted({s.name for q in readers if (s := state.queries[q].sink) is not None})
    if sinks:
        msg = (
            f"Cannot drop {stmt.name}.\nThe following streams and/or tables read from "
            f"this source: [{', '.join(sinks)}].\nYou need to drop them before dropping "
            f"{stmt.name}."
        )
        raise StatementError(msg)
    for qid in writers:
        state.queries.pop(qid).stop()
    del state.sources[stmt.name]
    if stmt.delete_topic:
        state.admin.delete(src.topic)
    if not replay:
        _record(state, stmt, props)
    return _status(
        state,
        stmt.kind.lower(),
        stmt.name,
        "drop",
        f"Source `{stmt.name}` (topic: {src.topic}) was dropped.",
    )


def terminate(
    state: EngineState, stmt: sx.Terminate, props: dict[str, Any], replay: bool
) -> dict[str, Any]:
    ids = list(state.queries) if stmt.query_id == "ALL" else [stmt.query_id]
    for qid in ids:
        q = state.queries.get(qid)
        if q is None:
            if qid in state.transient:
                state.transient.pop(qid).stop()
                continue
            msg = f"Unknown queryId: {qid}"
            raise StatementError(msg)
        q.stop()
        del state.queries[qid]
        if q.sink is not None and q.sink.owner_query == qid:
            q.sink.owner_query = None
    if not replay:
        _record(state, stmt, props)
    state.seq += 1
    return entities.current_status(
        state.seq, f"terminate/{stmt.query_id}/execute", "Query terminated."
    )
