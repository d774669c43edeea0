"""An in-memory engine for tests: the same parser, planner and QueryCore as the endpoint, with
topics replaced by lists. Records written by a query are serialised and read back exactly as
the Kafka runner would, then fed to the queries reading that sink.

    engine = MemoryEngine()
    engine.execute("CREATE STREAM S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='s', "
                   "VALUE_FORMAT='JSON');")
    engine.execute("CREATE STREAM T AS SELECT K, V * 2 AS D FROM S;")
    engine.insert("S", key="a", value={"V": 2}, timestamp=0)
    engine.output("T")  # -> [{"key": "a", "value": {"D": 4}, "timestamp": 0}]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.core import QueryCore
from stream_apps.ksqldb.errors import KsqlError, StatementError
from stream_apps.ksqldb.metastore import (
    DeserializationError,
    Source,
    check_column_names,
    check_key_format,
    formats,
    sink_key_format,
    source_window,
    wrap_single_value,
)
from stream_apps.ksqldb.nodes import Col, Star
from stream_apps.ksqldb.plan import Plan
from stream_apps.ksqldb.planner import plan_select
from stream_apps.ksqldb.processing_log import ProcessingLog, create_statement, topic_name
from stream_apps.ksqldb.queries import check_pull, pull_compiler, pull_rows, star_columns


@dataclass
class MemoryQuery:
    id: str
    core: QueryCore
    sink: Source
    sources: list[str]


@dataclass
class MemoryEngine:
    sources: dict[str, Source] = field(default_factory=dict)
    queries: list[MemoryQuery] = field(default_factory=list)
    topics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    processing_errors: list[str] = field(default_factory=list)
    processing_log: ProcessingLog | None = None
    # the clock pacing outer-join sweeps: fixed, as in Kafka Streams' TopologyTestDriver
    wall_clock_ms: int = 0

    def __post_init__(self) -> None:
        # ksqlDB's processing log: entries written to its topic, readable as a stream
        self.processing_log = ProcessingLog(
            lambda value, ts: self._deliver(topic_name(), None, value, ts)
        )
        self.execute(create_statement(topic_name()))

    def _processing_error(self, query_id: str, message: str) -> None:
        self.processing_errors.append(message)
        assert self.processing_log is not None
        self.processing_log.processing(query_id, message)

    def lookup(self, name: str) -> Source:
        if name not in self.sources:
            msg = f"{name} does not exist."
            raise StatementError(msg)
        return self.sources[name]

    def execute(self, text: str) -> None:
        for stmt in sx.parse(text):
            try:
                self._execute(stmt)
            except StatementError as exc:
                exc.message = sx.locate(exc.message, stmt.text)
                raise

    def _execute(self, stmt: sx.Statement) -> None:
        match stmt:
            case sx.CreateSource():
                self._create_source(stmt)
            case sx.CreateAs():
                self._create_as(stmt)
            case sx.InsertInto():
                assert stmt.select is not None
                target = self.lookup(stmt.target)
                self._start(
                    plan_select(stmt.select, self.lookup, persistent=True, sink=stmt.target),
                    target,
                )
            case sx.Drop():
                self.sources.pop(stmt.name, None)
                self.queries = [q for q in self.queries if q.sink.name != stmt.name]
            case _:
                msg = f"MemoryEngine does not run {type(stmt).__name__} statements"
                raise StatementError(msg)

    def _refuse_existing(self, kind: str, name: str) -> None:
        if name in self.sources:
            msg = (
                f"Cannot add {kind.lower()} '{name}': A "
                f"{self.sources[name].kind.lower()} with the same name already exists"
            )
            raise StatementError(msg)

    def _create_source(self, stmt: sx.CreateSource) -> None:
        self._refuse_existing(stmt.kind, stmt.name)
        check_column_names([c.name for c in stmt.columns])
        keys = [(c.name, c.type) for c in stmt.columns if c.key]
        values = [(c.name, c.type) for c in stmt.columns if not c.key]
        if stmt.kind == "TABLE" and not keys:
            msg = "Tables require a PRIMARY KEY. Please define the PRIMARY KEY."
            raise StatementError(msg)
        key_format, _ = formats(stmt.props, "KAFKA", "JSON")
        check_key_format(key_format, keys)
        topic = str(stmt.props.get("KAFKA_TOPIC") or stmt.name)
        ts = stmt.props.get("TIMESTAMP")
        self.sources[stmt.name] = Source(
            stmt.name,
            stmt.kind,
            topic,
            keys,
            values,
            key_format,
            timestamp=str(ts).upper() if ts else None,
            statement=stmt.text,
            wrap_single=wrap_single_value(stmt.props, values),
            window=source_window(stmt.props),
            partitions=int(stmt.props.get("PARTITIONS") or 1),
        )
        self.topics.setdefault(topic, [])

    def _create_as(self, stmt: sx.CreateAs) -> None:
        assert stmt.select is not None
        self._refuse_existing(stmt.kind, stmt.name)
        plan = plan_select(stmt.select, self.lookup, persistent=True, sink=stmt.name)
        if plan.output_kind != stmt.kind:
            msg = (
                f"Invalid result type. Your SELECT query produces a {plan.output_kind}. "
                f"Please use CREATE {plan.output_kind} AS SELECT statement instead."
            )
            raise StatementError(msg)
        driver = plan.bindings[0].source
        formats(stmt.props, driver.key_format, "JSON")
        key_format = sink_key_format(stmt.props, driver.key_format, plan.key_columns)
        check_key_format(key_format, plan.key_columns)
        topic = str(stmt.props.get("KAFKA_TOPIC") or stmt.name)
        ts = stmt.props.get("TIMESTAMP")
        sink = Source(
            stmt.name,
            stmt.kind,
            topic,
            plan.key_columns,
            plan.value_columns,
            key_format,
            window=plan.window,
            statement=stmt.text,
            typed=False,
            timestamp=str(ts).upper() if ts else None,
            wrap_single=wrap_single_value(stmt.props, plan.value_columns),
            partitions=int(stmt.props.get("PARTITIONS") or plan.bindings[-1].source.partitions),
        )
        self.topics.setdefault(topic, [])
        self._start(plan, sink)
        self.sources[stmt.name] = sink

    def _start(self, plan: Plan, sink: Source) -> None:
        """A query writing ``sink``: its core, with the encoded output path the Kafka runner
        binds, and its processing errors routed to the processing log."""
        qid = f"Q{len(self.queries)}"
        core = QueryCore(
            plan,
            lambda k, ws, row, rt: self._emit(sink, k, ws, row, rt),
            clock=lambda: self.wall_clock_ms,
        )
        if sink.timestamp:
            core.stamp_from(sink.timestamp)
        if sink.value_format == "JSON" and sink.wrap_single:
            core.bind_encoded(
                [n for n, _ in sink.value_columns],
                sink.encode_key,
                lambda k, v, rt: self._deliver(sink.topic, k, v, rt),
            )
        if plan.errors is not None:
            plan.errors.target = lambda msg: self._processing_error(qid, msg)
        self.queries.append(MemoryQuery(qid, core, sink, [b.source.name for b in plan.bindings]))

    # -- records -------------------------------------------------------------------------------
    def insert(
        self,
        source: str,
        key: Any = None,
        value: dict[str, Any] | None = None,
        timestamp: int = 0,
        raw: str | None = None,
        raw_key: str | None = None,
    ) -> None:
        """Write a record to ``source``'s topic (``value`` None = tombstone; ``raw`` and
        ``raw_key``: bytes as is)."""
        src = self.lookup(source)
        keys = key if isinstance(key, list | tuple) else (key,)
        kbytes = src.encode_key(tuple(keys)) if key is not None else None
        if raw_key is not None:
            kbytes = raw_key.encode()
        vbytes = (
            raw.encode() if raw is not None else (None if value is None else orjson.dumps(value))
        )
        self._deliver(src.topic, kbytes, vbytes, timestamp)

    def source_of_topic(self, topic: str) -> Source | None:
        """The source declared over ``topic`` (the latest one; names compared as ksqlDB's
        test files write them, case-insensitively)."""
        found = [s for s in self.sources.values() if s.topic.upper() == topic.upper()]
        return found[-1] if found else None

    def insert_topic(
        self,
        topic: str,
        key: Any = None,
        value: Any = None,
        timestamp: int = 0,
        window: dict[str, Any] | None = None,
    ) -> None:
        """Write a record to a topic by name, the key encoded as the source over it declares
        (a multi-column key as an object; ``window``: start/end of a windowed key)."""
        src = self.source_of_topic(topic)
        kbytes: bytes | None
        if key is None and window is None:
            kbytes = None
        elif src is None:
            kbytes = orjson.dumps(key)
        else:
            if isinstance(key, dict) and len(src.key_columns) > 1:
                values = tuple(key.get(n) for n, _ in src.key_columns)
            else:
                values = (key,)
            wstart: Any = None
            if window is not None:
                session = str(window.get("type", "")).lower() == "session"
                wstart = (window["start"], window["end"]) if session else window["start"]
            kbytes = src.encode_key(values, wstart)
        vbytes = None if value is None else orjson.dumps(value)
        self._deliver(src.topic if src is not None else topic, kbytes, vbytes, timestamp)

    def topic_output(self, topic: str) -> list[dict[str, Any]]:
        """The records of a topic decoded by its source: key (a value, or an object of the
        key columns), value, timestamp, and the window of a windowed key."""
        src = self.source_of_topic(topic)
        if src is None:
            msg = f"no source reads or writes topic {topic}"
            raise StatementError(msg)
        return [_decoded(src, rec, keys_by_name=True) for rec in self.topics.get(src.topic, [])]

    def _deliver(self, topic: str, kbytes: bytes | None, vbytes: bytes | None, ts: int) -> None:
        log = self.topics.setdefault(topic, [])
        offset = len(log)
        log.append({"key": kbytes, "value": vbytes, "timestamp": ts})
        for q in list(self.queries):
            for b in q.core.plan.bindings:
                if b.source.topic != topic:
                    continue
                src = b.source
                try:
                    key, ws = src.decode_key(kbytes)
                    row = None
                    if vbytes is not None:
                        row = src.decode_value(vbytes)
                        for (n, _), v in zip(src.key_columns, key, strict=False):
                            row[n] = v
                        rowtime = ts
                        if src.timestamp:
                            tv = row.get(src.timestamp)
                            if tv is None:
                                self.processing_errors.append("null timestamp")
                                continue
                            rowtime = int(tv)
                        row["ROWTIME"] = rowtime
                        row["ROWPARTITION"] = 0
                        row["ROWOFFSET"] = offset
                        if ws is not None and src.window is not None:
                            row["WINDOWSTART"], row["WINDOWEND"] = src.window_bounds(ws)
                    else:
                        rowtime = ts
                except DeserializationError as exc:
                    self.processing_errors.append(str(exc))
                    assert self.processing_log is not None
                    target = "key" if "key" in str(exc).split(" from topic")[0] else "value"
                    self.processing_log.deserialization(
                        q.id, topic, target, str(exc), kbytes if target == "key" else vbytes
                    )
                    continue
                q.core.on_record(b.slot, key, ws, row, rowtime)

    def _emit(
        self, sink: Source, key: tuple, ws: int | None, row: dict[str, Any] | None, rowtime: int
    ) -> None:
        kbytes = sink.encode_key(key, ws)
        vbytes = None if row is None else sink.encode_value(row)
        self._deliver(sink.topic, kbytes, vbytes, rowtime)

    def output(self, name: str) -> list[dict[str, Any]]:
        """The records of a source's topic, decoded: key (a value or a list), window, value."""
        src = self.lookup(name)
        return [_decoded(src, rec) for rec in self.topics[src.topic]]

    def pull(self, sql: str) -> list[list[Any]]:
        """A pull query on a table materialized by one of the queries."""
        stmts = sx.parse(sql)
        if len(stmts) != 1 or not isinstance(stmts[0], sx.Query) or stmts[0].select is None:
            msg = "expected one SELECT"
            raise StatementError(msg)
        sel = stmts[0].select
        check_pull(sel)
        src = self.lookup(sel.source.name)
        owner = next((q for q in self.queries if q.sink is src), None)
        if src.kind != "TABLE" or owner is None:
            msg = f"The {src.kind.lower()} {src.name} is not materialized."
            raise StatementError(msg)
        comp = pull_compiler(sel, src)
        where = comp.compile(sel.where) if sel.where is not None else None
        fns = []
        for it in sel.items:
            if isinstance(it.expr, Star):
                fns += [comp.compile(Col(None, n)) for n in star_columns(src)]
            else:
                fns.append(comp.compile(it.expr))
        return pull_rows(owner.core.materialized.values(), where, fns, sel.limit)


def _decoded(src: Source, rec: dict[str, Any], keys_by_name: bool = False) -> dict[str, Any]:
    """A stored record read by its source: key (one value; several as a list, or an object
    of the key columns with ``keys_by_name``), value, timestamp, the window of a windowed key."""
    key, ws = src.decode_key(rec["key"])
    k: Any = None
    if len(key) == 1:
        k = key[0]
    elif key:
        k = (
            {n: v for (n, _), v in zip(src.key_columns, key, strict=False)}
            if keys_by_name
            else list(key)
        )
    item: dict[str, Any] = {
        "key": k,
        "value": None if rec["value"] is None else orjson.loads(rec["value"]),
        "timestamp": rec["timestamp"],
    }
    if ws is not None and src.window is not None:
        start, end = src.window_bounds(ws)
        item["window"] = {"start": start, "end": end}
    return item


ANY = "<any>"  # an expected value that matches anything (e.g. a wall-clock TIME)


# -- ksqlDB's query-validation-test shape -------------------------------------------------------
_OTHER_FORMATS = re.compile(
    r"(VALUE_FORMAT|KEY_FORMAT|FORMAT)\s*=\s*'(AVRO|PROTOBUF|PROTOBUF_NOSR|DELIMITED|JSON_SR)'",
    re.IGNORECASE,
)


def qtt_formats(case: dict[str, Any]) -> list[str | None]:
    """The runs of a test case: once, or once with JSON for a ``format`` list that has it."""
    fmts = case.get("format")
    if not fmts:
        return [None]
    return [f for f in fmts if str(f).upper() == "JSON"]


def qtt_in_subset(statements: list[str]) -> bool:
    """JSON values and KAFKA/JSON/NONE keys: what the local endpoint runs."""
    text = " ".join(statements)
    return not _OTHER_FORMATS.search(text) and not re.search(
        r"VALUE_FORMAT\s*=\s*'KAFKA'", text, re.IGNORECASE
    )


def same_value(a: Any, b: Any) -> bool:
    """``a`` is what ``b`` expects: floats to 1e-9, containers element by element, ``ANY``
    matches anything."""
    if isinstance(b, str) and b == ANY:
        return True
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _fold_names(want: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """ksqlDB's test driver reads expected JSON values with the sink's schema, so a field
    written ``foo`` means the column FOO: the expected value's field names follow the
    record's where they differ only in case."""
    w, g = want.get("value"), got.get("value")
    if not isinstance(w, dict) or not isinstance(g, dict):
        return want
    upper = {k.upper(): k for k in g}
    folded = {(k if k in g else upper.get(k.upper(), k)): v for k, v in w.items()}
    return {**want, "value": folded}


def run_qtt_case(case: dict[str, Any], fmt: str | None = None) -> tuple[str, str]:
    """Run one case of ksqlDB's query-validation-test shape (``statements``, ``inputs`` and
    ``outputs`` by topic, or ``expectedException``) on a MemoryEngine: ("pass" | "fail" |
    "skip", why). Outputs are compared per topic, in order; a timestamp only where the case
    gives one."""
    statements = [s.replace("{FORMAT}", fmt or "JSON") for s in case["statements"]]
    if not qtt_in_subset(statements):
        return "skip", "a format other than JSON values and KAFKA/JSON/NONE keys"
    engine = MemoryEngine()
    refused: str | None = None
    for sql in statements:
        try:
            engine.execute(sql)
        except KsqlError as exc:
            refused = exc.message
            break
        except Exception as exc:  # noqa: BLE001 - a crash is a disagreement, reported as such
            return "fail", f"crash in {sql!r}: {type(exc).__name__}: {exc}"
    if "expectedException" in case:
        wanted = str(case["expectedException"].get("message", ""))
        if refused is None:
            return "fail", f"accepted a statement ksqlDB refuses: {wanted}"
        return "pass", refused
    if refused is not None:
        return "fail", f"refused: {refused}"
    try:
        for rec in case.get("inputs", []):
            engine.insert_topic(
                rec["topic"], rec.get("key"), rec.get("value"), rec.get("timestamp") or 0,
                rec.get("window"),
            )
    except Exception as exc:  # noqa: BLE001
        return "fail", f"crash on input: {type(exc).__name__}: {exc}"
    expected: dict[str, list[dict[str, Any]]] = {}
    for rec in case.get("outputs", []):
        want: dict[str, Any] = {"key": rec.get("key"), "value": rec.get("value")}
        if rec.get("timestamp") is not None:
            want["timestamp"] = rec["timestamp"]
        if "window" in rec:
            want["window"] = {"start": rec["window"]["start"], "end": rec["window"]["end"]}
        expected.setdefault(rec["topic"], []).append(want)
    for topic, wants in expected.items():
        try:
            got = engine.topic_output(topic)
        except Exception as exc:  # noqa: BLE001
            return "fail", f"{topic}: {exc}"
        wants = [_fold_names(w, g) for w, g in zip(wants, got, strict=False)] + wants[len(got):]
        shaped = [{k: g.get(k) for k in w} for g, w in zip(got, wants, strict=False)]
        extra_windows = any("window" in g and "window" not in w for g, w in zip(got, wants, strict=False))
        if len(got) != len(wants) or extra_windows or not all(
            same_value(g, w) for g, w in zip(shaped, wants, strict=True)
        ):
            return "fail", f"{topic}:\n  got  {got}\n  want {wants}"
    return "pass", ""
