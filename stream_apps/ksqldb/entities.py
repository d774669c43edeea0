"""The JSON entities of ksqlDB's REST API that the ``/ksql`` endpoint answers with: a
statement's ``currentStatus``, SHOW's lists (``streams``, ``tables``, ``queries``,
``kafka_topics``, ``properties``, ``function_names``), DESCRIBE's ``sourceDescription`` and
``describe_function``, EXPLAIN's ``queryDescription``; and the schema strings of query
headers."""

from __future__ import annotations

import time
from typing import Any

from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.functions import function_names
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.runners import QueryRunner
from stream_apps.ksqldb.state import EngineState

VERSION = "0.29.0"  # the ksqlDB version the endpoint answers as (/info, DESCRIBE FUNCTION)


def current_status(
    seq: int, command_id: str, message: str, query_id: str | None = None
) -> dict[str, Any]:
    return {
        "@type": "currentStatus",
        "commandId": command_id,
        "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
        "commandSequenceNumber": seq,
        "warnings": [],
    }


def inserted(target: str) -> dict[str, Any]:
    """INSERT INTO ... VALUES (no command sequence number: it changes no metastore)."""
    return {
        "@type": "currentStatus",
        "commandStatus": {"status": "SUCCESS", "message": "Inserted"},
        "commandId": f"stream/`{target}`/insert",
        "warnings": [],
    }


def property_set() -> dict[str, Any]:
    return {
        "@type": "currentStatus",
        "commandStatus": {"status": "SUCCESS", "message": "Property set"},
    }


def query_entity(q: QueryRunner) -> dict[str, Any]:
    """A persistent query as SHOW QUERIES and DESCRIBE list it."""
    state = "RUNNING" if q.state == "RUNNING" and q.alive else q.state
    if q.state == "RUNNING" and not q.alive and q.error:
        state = "ERROR"
    entity: dict[str, Any] = {
        "queryString": q.statement,
        "id": q.id,
        "sinks": [q.sink.name] if q.sink else [],
        "sinkKafkaTopics": [q.sink.topic] if q.sink else [],
        "sources": sorted({b.source.name for b in q.plan.bindings}),
        "statusCount": {state: 1},
        "queryType": "PERSISTENT",
        "state": state,
    }
    if q.error:
        entity["queryErrors"] = [
            {"timestamp": int(time.time() * 1000), "errorMessage": q.error, "type": "UNKNOWN"}
        ]
    return entity


def _push_query_entity(qid: str, q: QueryRunner) -> dict[str, Any]:
    return {
        "queryString": q.statement,
        "id": qid,
        "sinks": [],
        "sinkKafkaTopics": [],
        "statusCount": {"RUNNING": 1},
        "queryType": "PUSH",
        "state": "RUNNING",
    }


def _source_list_entry(s: Source) -> dict[str, Any]:
    return {
        "type": s.kind,
        "name": s.name,
        "topic": s.topic,
        "keyFormat": s.key_format,
        "valueFormat": s.value_format,
        "isWindowed": s.windowed,
    }


def show(state: EngineState, stmt: sx.Show) -> dict[str, Any]:
    what = stmt.what
    if what in ("STREAMS", "TABLES"):
        return _show_sources(state, what, stmt.extended)
    if what == "QUERIES":
        queries = [query_entity(q) for q in state.queries.values()]
        queries += [_push_query_entity(qid, t) for qid, t in state.transient.items()]
        return {"@type": "queries", "queries": queries, "warnings": []}
    if what == "TOPICS":
        items = [
            {"name": n, "replicaInfo": [1] * len(t.partitions)}
            for n, t in sorted(state.admin.topics().items())
            if not n.startswith("_")
        ]
        return {"@type": "kafka_topics", "topics": items, "warnings": []}
    if what == "PROPERTIES":
        return {
            "@type": "properties",
            "properties": [
                {"name": k, "scope": "KSQL", "value": v} for k, v in sorted(state.properties.items())
            ],
            "overwrittenProperties": [],
            "defaultProperties": [],
            "warnings": [],
        }
    if what == "FUNCTIONS":
        return {"@type": "function_names", "functions": function_names(), "warnings": []}
    if what == "TYPES":
        return {"@type": "type_list", "types": {}, "warnings": []}
    return {"@type": what.lower(), what.lower(): [], "warnings": []}


def _show_sources(state: EngineState, what: str, extended: bool) -> dict[str, Any]:
    kind = what[:-1]
    items = [
        _source_list_entry(s)
        for s in sorted(state.sources.values(), key=lambda s: s.name)
        if s.kind == kind
    ]
    if extended:
        return {
            "@type": "source_descriptions",
            "sourceDescriptions": [
                _description(state, state.sources[i["name"]], True) for i in items
            ],
            "warnings": [],
        }
    return {"@type": what.lower(), what.lower(): items, "warnings": []}


def _field_entry(name: str, t: sx.SqlType, key: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "schema": schema_json(t)}
    if key:
        entry["type"] = "KEY"
    return entry


def _description(state: EngineState, s: Source, extended: bool) -> dict[str, Any]:
    readers, writers = state.readers_writers(s.name)
    fields = [_field_entry(n, t, True) for n, t in s.key_columns]
    fields += [_field_entry(n, t, False) for n, t in s.value_columns]
    stats = ""
    errors = ""
    if extended and s.owner_query in state.queries:
        q = state.queries[s.owner_query]
        stats = f"messages-per-sec: 0, total-messages: {q.records_out}"
        errors = f"failed-messages: {q.processing_errors}"
    return {
        "name": s.name,
        "windowType": s.window.kind if s.window else None,
        "readQueries": [query_entity(state.queries[q]) for q in readers],
        "writeQueries": [query_entity(state.queries[q]) for q in writers],
        "fields": fields,
        "type": s.kind,
        "timestamp": s.timestamp or "",
        "statistics": stats,
        "errorStats": errors,
        "extended": extended,
        "keyFormat": s.key_format,
        "valueFormat": s.value_format,
        "topic": s.topic,
        "partitions": s.partitions,
        "replication": s.replicas,
        "statement": s.statement,
        "sourceConstraints": [],
    }


def describe(state: EngineState, stmt: sx.Describe) -> dict[str, Any]:
    if stmt.function:
        return _describe_function(stmt.name)
    src = state.sources.get(stmt.name)
    if src is None:
        msg = f"Could not find STREAM/TABLE '{stmt.name}' in the Metastore"
        raise StatementError(msg)
    return {
        "@type": "sourceDescription",
        "sourceDescription": _description(state, src, stmt.extended),
        "warnings": [],
    }


def _describe_function(name: str) -> dict[str, Any]:
    names = {f["name"]: f for f in function_names()}
    if name not in names:
        msg = f"Can't find any functions with the name '{name}'"
        raise StatementError(msg)
    return {
        "@type": "describe_function",
        "name": name,
        "type": names[name]["type"],
        "description": "",
        "author": "instore",
        "version": VERSION,
        "path": "internal",
        "functions": [],
        "warnings": [],
    }


def explain(state: EngineState, stmt: sx.Explain) -> dict[str, Any]:
    q = state.queries.get(stmt.query_id)
    if q is None:
        msg = (
            f"Query with id:{stmt.query_id} does not exist, use SHOW QUERIES to view "
            "the full set of running queries."
        )
        raise StatementError(msg)
    return {"@type": "queryDescription", "queryDescription": query_entity(q), "warnings": []}


def schema_json(t: sx.SqlType) -> dict[str, Any]:
    """A column's ``schema`` in DESCRIBE's ``fields``."""
    if t.name == "ARRAY":
        return {"type": "ARRAY", "fields": None, "memberSchema": schema_json(t.params[0])}
    if t.name == "MAP":
        return {"type": "MAP", "fields": None, "memberSchema": schema_json(t.params[1])}
    if t.name == "STRUCT":
        return {
            "type": "STRUCT",
            "memberSchema": None,
            "fields": [{"name": n, "schema": schema_json(ft)} for n, ft in t.params],
        }
    return {"type": t.name, "fields": None, "memberSchema": None}


def schema_string(columns: list[tuple[str, sx.SqlType]]) -> str:
    """The ``schema`` of a /query header: each column's back-quoted name and its type."""
    return ", ".join(f"`{n}` {t}" for n, t in columns)
