"""The engine: metastore, statement execution, persistent/transient/pull queries.

Every statement that changes the metastore is appended to the command topic
(``_confluent-ksql-<service>_command_topic``, as ksqlDB does), and replayed on start, so the
endpoint comes back with its streams, tables and persistent queries after a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from instore.kafka import make_admin, make_consumer, make_producer
from instore.settings import Settings
from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.errors import KsqlError, QueryEndpointError, StatementError
from stream_apps.ksqldb.expressions import PSEUDO, WINDOW_COLS, Compiler, Scope, Slot
from stream_apps.ksqldb.functions import function_names
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
from stream_apps.ksqldb.planner import Plan, plan_select
from stream_apps.ksqldb.processing_log import STREAM as PROCESSING_LOG_STREAM
from stream_apps.ksqldb.processing_log import ProcessingLog, create_statement, topic_name
from stream_apps.ksqldb.runners import QueryRunner, end_offsets

log = logging.getLogger(__name__)

VERSION = "0.29.0"
DEFAULT_PROPERTIES = {
    "ksql.streams.auto.offset.reset": "latest",
    "ksql.service.id": "default_",
    "ksql.persistence.default.format.key": "KAFKA",
    "ksql.extension.dir": "ext",
    "ksql.streams.commit.interval.ms": "1000",
    # Kafka Streams threads per query; here processes, for per-record stream queries
    # (stream_apps/ksqldb/workers.py): Python runs one thread at a time
    "ksql.streams.num.stream.threads": str(min(2, os.cpu_count() or 1)),
}


@dataclass
class PushQuery:
    id: str
    runner: QueryRunner
    columns: list[tuple[str, sx.SqlType]]
    rows: Any  # queue.Queue of ("row", list) | ("tombstone", list) | ("end", msg)


@dataclass
class PullResult:
    query_id: str
    columns: list[tuple[str, sx.SqlType]]
    rows: list[list[Any]] = field(default_factory=list)


def _prop(props: dict[str, Any], *names: str) -> Any:
    for n in names:
        for k, v in props.items():
            if k.lower() in (n, f"ksql.streams.{n}"):
                return v
    return None


class Engine:
    def __init__(
        self, settings: Settings, *, service_id: str = "default_", replay: bool = True
    ) -> None:
        self.settings = settings
        self.service_id = service_id
        self.sources: dict[str, Source] = {}
        self.queries: dict[str, QueryRunner] = {}
        self.transient: dict[str, QueryRunner] = {}
        self.command_status: dict[str, dict[str, str]] = {}
        self.seq = 0
        self.lock = threading.RLock()
        self.properties = dict(DEFAULT_PROPERTIES)
        self.command_topic = f"_confluent-ksql-{service_id}_command_topic"
        self._cmd_producer: Any = None
        self._admin = make_admin(settings)
        self.started_at = time.time()
        self._log_producer: Any = None
        self.processing_log = ProcessingLog(self._write_processing_log)
        self.processing_log_topic = topic_name(service_id)
        if replay:
            self._replay()
        self._install_processing_log()

    # -- the processing log ---------------------------------------------------------------------
    def _install_processing_log(self) -> None:
        """The log topic and the KSQL_PROCESSING_LOG stream over it (a built-in, not a command:
        ksqlDB's ksql.logging.processing.stream.auto.create)."""
        if PROCESSING_LOG_STREAM in self.sources:
            return
        try:
            self._ensure_topic(self.processing_log_topic, 1, 1, compact=False, kind="STREAM")
            (stmt,) = sx.parse(create_statement(self.processing_log_topic))
            assert isinstance(stmt, sx.CreateSource)
            self._create_source(stmt, {}, replay=True)
        except (KsqlError, KafkaException) as exc:
            log.warning("processing log stream not installed: %s", exc)

    def _write_processing_log(self, value: bytes, ts: int) -> None:
        with self.lock:
            if self._log_producer is None:
                self._log_producer = make_producer(self.settings)
            producer = self._log_producer
        try:
            producer.produce(self.processing_log_topic, value=value, timestamp=ts)
        except BufferError:
            producer.poll(0.1)
            producer.produce(self.processing_log_topic, value=value, timestamp=ts)
        producer.poll(0)

    # -- helpers --------------------------------------------------------------------------------
    def lookup(self, name: str) -> Source:
        src = self.sources.get(name)
        if src is None:
            msg = f"{name} does not exist."
            raise StatementError(msg)
        return src

    def _topics(self) -> dict[str, Any]:
        return self._admin.list_topics(timeout=10).topics

    def _ensure_topic(
        self, name: str, partitions: int | None, replicas: int, *, compact: bool, kind: str
    ) -> int:
        topics = self._topics()
        if name in topics:
            have = len(topics[name].partitions)
            if partitions is not None and partitions != have:
                msg = (
                    f"A Kafka topic with the name '{name}' already exists, with different "
                    f"partition/replica configuration than required. KSQL expects "
                    f"{partitions} partitions (topic has {have})."
                )
                raise StatementError(msg)
            return have
        if partitions is None:
            msg = (
                f"Topic '{name}' does not exist. If you want to create a new topic for the "
                f"{kind.lower()} please re-run the statement providing the required "
                "'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). "
                "For example: CREATE STREAM FOO (ID INT, VALUE STRING) WITH (KAFKA_TOPIC='foo', "
                "PARTITIONS=1, REPLICAS=1, VALUE_FORMAT='JSON');"
            )
            raise StatementError(msg)
        cfg = {"cleanup.policy": "compact"} if compact else {}
        futs = self._admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replicas, config=cfg)],
            operation_timeout=10,
        )
        for fut in futs.values():
            try:
                fut.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    msg_0 = f"Could not create topic {name}: {exc}"
                    raise StatementError(msg_0) from None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and name not in self._topics():
            time.sleep(0.05)
        return partitions

    def _status(
        self, entity_type: str, name: str, action: str, message: str, query_id: str | None = None
    ) -> dict[str, Any]:
        self.seq += 1
        command_id = f"{entity_type}/`{name}`/{action}"
        self.command_status[command_id] = {"status": "SUCCESS", "message": message}
        return {
            "@type": "currentStatus",
            "commandId": command_id,
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
            "commandSequenceNumber": self.seq,
            "warnings": [],
        }

    def _record(
        self, stmt: sx.Statement, props: dict[str, Any], query_id: str | None = None
    ) -> None:
        if self._cmd_producer is None:
            self._ensure_topic(self.command_topic, 1, 1, compact=False, kind="stream")
            self._cmd_producer = make_producer(self.settings)
        body = {"statement": stmt.text, "streamsProperties": props, "queryId": query_id}
        self._cmd_producer.produce(self.command_topic, value=orjson.dumps(body))
        self._cmd_producer.flush(10)

    def _replay(self) -> None:
        try:
            if self.command_topic not in self._topics():
                return
        except KafkaException:
            log.warning("no broker answers: starting with an empty metastore")
            return
        consumer = make_consumer(self.settings)
        records: list[dict[str, Any]] = []
        try:
            tp = TopicPartition(self.command_topic, 0)
            _lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if hi <= 0:
                return
            consumer.assign([TopicPartition(self.command_topic, 0, 0)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = consumer.poll(0.5)
                if m is None or m.error() is not None:
                    continue
                records.append(orjson.loads(m.value() or b"{}"))
                if (m.offset() or 0) + 1 >= hi:
                    break
        finally:
            consumer.close()
        for rec in records:
            try:
                for stmt in sx.parse(rec["statement"]):
                    self.execute_statement(
                        stmt,
                        rec.get("streamsProperties") or {},
                        replay=True,
                        query_id=rec.get("queryId"),
                    )
            except KsqlError as exc:
                log.warning("replay of a command failed: %s", exc.message)
        log.info(
            "replayed %d commands: %d sources, %d queries",
            len(records),
            len(self.sources),
            len(self.queries),
        )

    # -- entry points ---------------------------------------------------------------------------
    def execute(self, text: str, props: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run every statement of ``text`` (the /ksql endpoint). On error raises KsqlError with
        ``entities`` (those done before) and ``statement`` attributes."""
        props = dict(props or {})
        entities: list[dict[str, Any]] = []
        statements = sx.parse(text)
        for stmt in statements:
            try:
                if isinstance(stmt, sx.SetProperty):
                    if stmt.value is None:
                        props.pop(stmt.name, None)
                    else:
                        props[stmt.name] = stmt.value
                    continue
                with self.lock:
                    entity = self.execute_statement(stmt, props)
                entity.setdefault("statementText", stmt.text)
                entities.append(entity)
            except KsqlError as exc:
                exc.message = sx.locate(exc.message, stmt.text)
                exc.entities = entities  # type: ignore[attr-defined]
                exc.statement = stmt.text  # type: ignore[attr-defined]
                raise
        return entities

    def execute_statement(
        self,
        stmt: sx.Statement,
        props: dict[str, Any],
        *,
        replay: bool = False,
        query_id: str | None = None,
    ) -> dict[str, Any]:
        if isinstance(stmt, sx.CreateSource):
            return self._create_source(stmt, props, replay)
        if isinstance(stmt, sx.CreateAs):
            return self._create_as(stmt, props, replay, query_id)
        if isinstance(stmt, sx.InsertInto):
            return self._insert_into(stmt, props, replay, query_id)
        if isinstance(stmt, sx.InsertValues):
            return self._insert_values(stmt)
        if isinstance(stmt, sx.Query):
            msg = (
                "The following statement types should be issued to the websocket endpoint "
                "'/query':\n\t* PRINT\n\t* SELECT"
            )
            raise QueryEndpointError(msg)
        if isinstance(stmt, sx.Show):
            return self._show(stmt)
        if isinstance(stmt, sx.Describe):
            return self._describe(stmt)
        if isinstance(stmt, sx.Drop):
            return self._drop(stmt, props, replay)
        if isinstance(stmt, sx.Terminate):
            return self._terminate(stmt, props, replay)
        if isinstance(stmt, sx.Explain):
            q = self.queries.get(stmt.query_id)
            if q is None:
                msg = (
                    f"Query with id:{stmt.query_id} does not exist, use SHOW QUERIES to view "
                    "the full set of running queries."
                )
                raise StatementError(msg)
            return {
                "@type": "queryDescription",
                "queryDescription": self._query_entity(q),
                "warnings": [],
            }
        if isinstance(stmt, sx.SetProperty):
            return {
                "@type": "currentStatus",
                "commandStatus": {"status": "SUCCESS", "message": "Property set"},
            }
        msg = f"Unsupported statement: {stmt.text}"
        raise StatementError(msg)

    # -- DDL ------------------------------------------------------------------------------------
    def _create_source(
        self, stmt: sx.CreateSource, props: dict[str, Any], replay: bool
    ) -> dict[str, Any]:
        kind = stmt.kind
        noun = kind.capitalize()
        if stmt.name in self.sources and not stmt.or_replace:
            if stmt.if_not_exists:
                return self._status(
                    kind.lower(),
                    stmt.name,
                    "create",
                    f"Cannot add {kind.lower()} `{stmt.name}`: A {kind.lower()} "
                    "with the same name already exists.",
                )
            existing = self.sources[stmt.name]
            msg = (
                f"Cannot add {kind.lower()} '{stmt.name}': A {existing.kind.lower()} with the "
                "same name already exists"
            )
            raise StatementError(msg)
        if not stmt.columns:
            msg = f"The statement does not define any columns. Got: {stmt.text}"
            raise StatementError(msg)
        names = [c.name for c in stmt.columns]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            msg = f"Duplicate column names: `{dup}`"
            raise StatementError(msg)
        check_column_names([c.name for c in stmt.columns])
        keys = [(c.name, c.type) for c in stmt.columns if c.key]
        values = [(c.name, c.type) for c in stmt.columns if not c.key and not c.headers]
        if kind == "TABLE" and not keys:
            msg = "Tables require a PRIMARY KEY. Please define the PRIMARY KEY."
            raise StatementError(msg)
        p = stmt.props
        topic = p.get("KAFKA_TOPIC")
        if not topic:
            msg = (
                'Missing required property "KAFKA_TOPIC" for the '
                + noun.lower()
                + " (and no topic with the default name exists)."
            )
            raise StatementError(msg)
        key_format, value_format = formats(p)
        check_key_format(key_format, keys)
        partitions = p.get("PARTITIONS")
        ts_col = p.get("TIMESTAMP")
        if ts_col is not None:
            ts_col = str(ts_col).upper() if str(ts_col).upper() in names else str(ts_col)
            if ts_col not in names:
                msg = ("The TIMESTAMP column set in the WITH clause does not exist in the "
                       f"schema: '{ts_col}'")
                raise StatementError(msg)
        nparts = self._ensure_topic(
            str(topic),
            int(partitions) if partitions else None,
            int(p.get("REPLICAS") or 1),
            compact=False,
            kind=kind,
        )
        src = Source(
            stmt.name,
            kind,
            str(topic),
            keys,
            values,
            key_format,
            value_format,
            nparts,
            int(p.get("REPLICAS") or 1),
            ts_col,
            source_window(p),
            stmt.text,
            read_only=stmt.source,
            wrap_single=wrap_single_value(p, values),
        )
        self.sources[stmt.name] = src
        if not replay:
            self._record(stmt, props)
        return self._status(kind.lower(), stmt.name, "create", f"{noun} created")

    def _offset_reset(self, props: dict[str, Any]) -> str:
        v = _prop(props, "auto.offset.reset") or self.properties["ksql.streams.auto.offset.reset"]
        return str(v).lower()

    def _create_as(
        self, stmt: sx.CreateAs, props: dict[str, Any], replay: bool, query_id: str | None
    ) -> dict[str, Any]:
        kind = stmt.kind
        if stmt.name in self.sources:
            if stmt.if_not_exists:
                return self._status(
                    kind.lower(),
                    stmt.name,
                    "create",
                    f"Cannot add {kind.lower()} `{stmt.name}`: already exists.",
                )
            if not stmt.or_replace:
                existing = self.sources[stmt.name]
                msg = (
                    f"Cannot add {kind.lower()} '{stmt.name}': A {existing.kind.lower()} with "
                    "the same name already exists"
                )
                raise StatementError(msg)
        assert stmt.select is not None
        plan = plan_select(stmt.select, self.lookup, persistent=True, sink=stmt.name)
        if plan.output_kind != kind:
            produced = plan.output_kind
            msg = (
                f"Invalid result type. Your SELECT query produces a {produced}. Please use "
                f"CREATE {produced} AS SELECT statement instead."
            )
            raise StatementError(msg)
        driver = plan.bindings[0].source
        p = stmt.props
        topic = str(p.get("KAFKA_TOPIC") or stmt.name)
        _, value_format = formats(p, driver.key_format, driver.value_format)
        key_format = sink_key_format(p, driver.key_format, plan.key_columns)
        check_key_format(key_format, plan.key_columns)
        partitions = int(p.get("PARTITIONS") or driver.partitions)
        if stmt.or_replace and stmt.name in self.sources:
            old = self.sources[stmt.name]
            if old.owner_query and old.owner_query in self.queries:
                self.queries.pop(old.owner_query).stop()
        nparts = self._ensure_topic(
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
        qid = query_id or f"{prefix}_{stmt.name}_{self.seq + 1}"
        runner = self._start_persistent(qid, plan, sink, props, stmt.text)
        sink.owner_query = qid
        self.sources[stmt.name] = sink
        if not replay:
            self._record(stmt, props, qid)
        return self._status(
            kind.lower(), stmt.name, "create", f"Created query with ID {runner.id}", runner.id
        )

    def _start_persistent(
        self, qid: str, plan: Plan, sink: Source, props: dict[str, Any], text: str
    ) -> QueryRunner:
        reset = self._offset_reset(props)
        starts = {}
        if reset != "earliest":
            starts = end_offsets(self.settings, [b.source.topic for b in plan.bindings])
        workers = int(
            _prop(props, "num.stream.threads")
            or self.properties["ksql.streams.num.stream.threads"]
        )
        spec = {
            "query_id": qid,
            "settings": self.settings.model_dump(),
            "sources": dict(self.sources),
            "sink": sink,
            "statement": text,
            "offset_reset": reset,
            "start_offsets": starts,
            "processing_log_topic": self.processing_log_topic,
        }
        runner = QueryRunner(
            qid,
            plan,
            self.settings,
            sink=sink,
            offset_reset=reset,
            start_offsets=starts,
            statement=text,
            processing_log=self.processing_log,
            workers=workers,
            worker_spec=spec,
        )
        self.queries[qid] = runner
        runner.start()
        log.info("started persistent query %s", qid)
        return runner

    def _insert_into(
        self, stmt: sx.InsertInto, props: dict[str, Any], replay: bool, query_id: str | None
    ) -> dict[str, Any]:
        target = self.lookup(stmt.target)
        if target.kind != "STREAM":
            msg = f"INSERT INTO can only be used to insert into a stream. {target.name} is a table."
            raise StatementError(msg)
        assert stmt.select is not None
        plan = plan_select(stmt.select, self.lookup, persistent=True, sink=stmt.target)
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
        qid = query_id or stmt.query_id or f"INSERTQUERY_{self.seq + 1}"
        self._start_persistent(qid, plan, target, props, stmt.text)
        if not replay:
            self._record(stmt, props, qid)
        return self._status("stream", target.name, "create", f"Created query with ID {qid}", qid)

    def _insert_values(self, stmt: sx.InsertValues) -> dict[str, Any]:
        target = self.lookup(stmt.target)
        if target.owner_query is not None and target.kind == "TABLE":
            msg = f"Cannot insert values into read-only table: {target.name}"
            raise StatementError(msg)
        cols = stmt.columns or [n for n, _ in target.key_columns + target.value_columns]
        if len(cols) != len(stmt.values):
            msg = (
                f"Expected number columns and values to match: {cols}, "
                f"{[sx.expr_sql(v) for v in stmt.values]}"
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
        producer = make_producer(self.settings)
        kwargs: dict[str, Any] = {"key": target.encode_key(key), "value": target.encode_value(row)}
        if rowtime is not None:
            kwargs["timestamp"] = rowtime
        producer.produce(target.topic, **kwargs)
        producer.flush(10)
        return {
            "@type": "currentStatus",
            "commandStatus": {"status": "SUCCESS", "message": "Inserted"},
            "commandId": f"stream/`{target.name}`/insert",
            "warnings": [],
        }

    def insert_rows(self, target: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The /inserts-stream endpoint: write JSON rows to a stream; one ack per row."""
        src = self.lookup(target)
        if src.kind != "STREAM":
            msg = f"Cannot insert into a table: {target}"
            raise StatementError(msg)
        cols = src.columns
        upper = {n.upper(): n for n in cols}
        producer = make_producer(self.settings)
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

    def _readers_writers(self, name: str) -> tuple[list[str], list[str]]:
        readers, writers = [], []
        for qid, q in self.queries.items():
            if any(b.source.name == name for b in q.plan.bindings):
                readers.append(qid)
            if q.sink is not None and q.sink.name == name:
                writers.append(qid)
        return readers, writers

    def _drop(self, stmt: sx.Drop, props: dict[str, Any], replay: bool) -> dict[str, Any]:
        src = self.sources.get(stmt.name)
        if src is None:
            if stmt.if_exists:
                return self._status(
                    stmt.kind.lower(), stmt.name, "drop", f"Source `{stmt.name}` does not exist."
                )
            msg = f"{stmt.kind.capitalize()} {stmt.name} does not exist."
            raise StatementError(msg)
        if src.kind != stmt.kind:
            msg = f"Incompatible data source type is {src.kind}, but statement was DROP {stmt.kind}"
            raise StatementError(msg)
        readers, writers = self._readers_writers(stmt.name)
        sinks = sorted({s.name for q in readers if (s := self.queries[q].sink) is not None})
        if sinks:
            msg = (
                f"Cannot drop {stmt.name}.\nThe following streams and/or tables read from "
                f"this source: [{', '.join(sinks)}].\nYou need to drop them before dropping "
                f"{stmt.name}."
            )
            raise StatementError(msg)
        for qid in writers:
            self.queries.pop(qid).stop()
        del self.sources[stmt.name]
        if stmt.delete_topic:
            futs = self._admin.delete_topics([src.topic], operation_timeout=10)
            for fut in futs.values():
                try:
                    fut.result()
                except KafkaException as exc:
                    log.warning("could not delete topic %s: %s", src.topic, exc)
        if not replay:
            self._record(stmt, props)
        return self._status(
            stmt.kind.lower(),
            stmt.name,
            "drop",
            f"Source `{stmt.name}` (topic: {src.topic}) was dropped.",
        )

    def _terminate(self, stmt: sx.Terminate, props: dict[str, Any], replay: bool) -> dict[str, Any]:
        ids = list(self.queries) if stmt.query_id == "ALL" else [stmt.query_id]
        for qid in ids:
            q = self.queries.get(qid)
            if q is None:
                if qid in self.transient:
                    self.transient.pop(qid).stop()
                    continue
                msg = f"Unknown queryId: {qid}"
                raise StatementError(msg)
            q.stop()
            del self.queries[qid]
            if q.sink is not None and q.sink.owner_query == qid:
                q.sink.owner_query = None
        if not replay:
            self._record(stmt, props)
        self.seq += 1
        return {
            "@type": "currentStatus",
            "commandId": f"terminate/{stmt.query_id}/execute",
            "commandStatus": {"status": "SUCCESS", "message": "Query terminated.", "queryId": None},
            "commandSequenceNumber": self.seq,
            "warnings": [],
        }

    # -- SHOW / DESCRIBE ------------------------------------------------------------------------
    def _query_entity(self, q: QueryRunner) -> dict[str, Any]:
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

    def _source_list_entry(self, s: Source) -> dict[str, Any]:
        return {
            "type": s.kind,
            "name": s.name,
            "topic": s.topic,
            "keyFormat": s.key_format,
            "valueFormat": s.value_format,
            "isWindowed": s.windowed,
        }

    def _show(self, stmt: sx.Show) -> dict[str, Any]:
        what = stmt.what
        if what in ("STREAMS", "TABLES"):
            kind = what[:-1]
            items = [
                self._source_list_entry(s)
                for s in sorted(self.sources.values(), key=lambda s: s.name)
                if s.kind == kind
            ]
            if stmt.extended:
                return {
                    "@type": "source_descriptions",
                    "sourceDescriptions": [
                        self._description(self.sources[i["name"]], True) for i in items
                    ],
                    "warnings": [],
                }
            return {"@type": what.lower(), what.lower(): items, "warnings": []}
        if what == "QUERIES":
            queries = [self._query_entity(q) for q in self.queries.values()]
            for qid, t in self.transient.items():
                queries.append(
                    {
                        "queryString": t.statement,
                        "id": qid,
                        "sinks": [],
                        "sinkKafkaTopics": [],
                        "statusCount": {"RUNNING": 1},
                        "queryType": "PUSH",
                        "state": "RUNNING",
                    }
                )
            return {"@type": "queries", "queries": queries, "warnings": []}
        if what == "TOPICS":
            topics = self._topics()
            items = [
                {"name": n, "replicaInfo": [1] * len(t.partitions)}
                for n, t in sorted(topics.items())
                if not n.startswith("_")
            ]
            return {"@type": "kafka_topics", "topics": items, "warnings": []}
        if what == "PROPERTIES":
            return {
                "@type": "properties",
                "properties": [
                    {"name": k, "scope": "KSQL", "value": v}
                    for k, v in sorted(self.properties.items())
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

    def _description(self, s: Source, extended: bool) -> dict[str, Any]:
        readers, writers = self._readers_writers(s.name)

        def field_entry(name: str, t: sx.SqlType, key: bool) -> dict[str, Any]:
            entry: dict[str, Any] = {"name": name, "schema": _schema_json(t)}
            if key:
                entry["type"] = "KEY"
            return entry

        fields = [field_entry(n, t, True) for n, t in s.key_columns]
        fields += [field_entry(n, t, False) for n, t in s.value_columns]
        stats = ""
        errors = ""
        if extended and s.owner_query in self.queries:
            q = self.queries[s.owner_query]
            stats = f"messages-per-sec: 0, total-messages: {q.records_out}"
            errors = f"failed-messages: {q.processing_errors}"
        return {
            "name": s.name,
            "windowType": s.window.kind if s.window else None,
            "readQueries": [self._query_entity(self.queries[q]) for q in readers],
            "writeQueries": [self._query_entity(self.queries[q]) for q in writers],
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

    def _describe(self, stmt: sx.Describe) -> dict[str, Any]:
        if stmt.function:
            names = {f["name"]: f for f in function_names()}
            if stmt.name not in names:
                msg = f"Can't find any functions with the name '{stmt.name}'"
                raise StatementError(msg)
            return {
                "@type": "describe_function",
                "name": stmt.name,
                "type": names[stmt.name]["type"],
                "description": "",
                "author": "instore",
                "version": VERSION,
                "path": "internal",
                "functions": [],
                "warnings": [],
            }
        src = self.sources.get(stmt.name)
        if src is None:
            msg = f"Could not find STREAM/TABLE '{stmt.name}' in the Metastore"
            raise StatementError(msg)
        return {
            "@type": "sourceDescription",
            "sourceDescription": self._description(src, stmt.extended),
            "warnings": [],
        }

    # -- queries --------------------------------------------------------------------------------
    def parse_query(self, text: str) -> sx.Select:
        stmts = sx.parse(text)
        if len(stmts) != 1:
            msg = f"Expected exactly one statement, got {len(stmts)}"
            raise StatementError(msg)
        stmt = stmts[0]
        if not isinstance(stmt, sx.Query) or stmt.select is None:
            msg = "The /query endpoint accepts only SELECT statements (and PRINT): " + stmt.text
            raise StatementError(msg)
        return stmt.select

    def pull(self, select: sx.Select) -> PullResult:
        if select.joins:
            msg = "Pull queries don't support JOIN clauses."
            raise StatementError(msg)
        if select.group_by or select.window is not None:
            msg = "Pull queries don't support GROUP BY clauses."
            raise StatementError(msg)
        if select.partition_by:
            msg = "Pull queries don't support PARTITION BY clauses."
            raise StatementError(msg)
        src = self.lookup(select.source.name)
        cols = dict(src.columns)
        for p, t in PSEUDO.items():
            cols.setdefault(p, t)
        if src.windowed:
            cols |= WINDOW_COLS
        scope = Scope([Slot(select.source.alias, src.name, cols)])
        comp = Compiler(scope)
        where = comp.compile(select.where) if select.where is not None else None
        items: list[tuple[str, sx.SqlType, Any]] = []
        unnamed = 0
        for it in select.items:
            if it.expr[0] == "star":
                names = [n for n, _ in src.key_columns]
                if src.windowed:
                    names += ["WINDOWSTART", "WINDOWEND"]
                names += [n for n, _ in src.value_columns]
                for n in names:
                    items.append((n, cols[n], comp.compile(("col", None, n))))
                continue
            name = it.alias or (it.expr[2] if it.expr[0] in ("col", "deref") else None)
            if name is None:
                name = f"KSQL_COL_{unnamed}"
                unnamed += 1
            items.append((name, comp.infer(it.expr), comp.compile(it.expr)))
        if src.owner_query and src.owner_query in self.queries and src.kind == "TABLE":
            core = self.queries[src.owner_query].core
            for _ in range(5):
                try:
                    rows = list(core.materialized.values())
                    break
                except RuntimeError:
                    continue
            else:
                rows = []
        else:
            rows = self._scan(src)
        out: list[list[Any]] = []
        for row in rows:
            r = (row,)
            if where is not None and where(r) is not True:
                continue
            out.append([f(r) for _, _, f in items])
            if select.limit is not None and len(out) >= select.limit:
                break
        qid = f"query_{int(time.time() * 1000)}"
        return PullResult(qid, [(n, t) for n, t, _ in items], out)

    def _scan(self, src: Source) -> list[dict[str, Any]]:
        """Read a topic to its end: the rows of a stream, or the latest row per key of a table."""
        ends = end_offsets(self.settings, [src.topic])
        consumer = make_consumer(self.settings)
        latest: dict[Any, dict[str, Any] | None] = {}
        rows: list[dict[str, Any]] = []
        try:
            todo = {k: v for k, v in ends.items() if v > 0}
            if not todo:
                return []
            consumer.assign([TopicPartition(t, p, 0) for (t, p) in todo])
            deadline = time.monotonic() + 30
            while todo and time.monotonic() < deadline:
                for m in consumer.consume(500, timeout=0.2):
                    if m.error() is not None:
                        continue
                    tp = (m.topic() or "", m.partition() or 0)
                    if (m.offset() or 0) + 1 >= todo.get(tp, 0):
                        todo.pop(tp, None)
                    try:
                        key, ws = src.decode_key(m.key())
                        if m.value() is None:
                            latest[(key, ws)] = None
                            continue
                        row = src.decode_value(m.value() or b"")
                    except DeserializationError:
                        continue
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
        finally:
            consumer.close()
        if src.kind == "TABLE":
            return [r for r in latest.values() if r is not None]
        return rows

    def push(
        self,
        select: sx.Select,
        props: dict[str, Any],
        text: str,
        on_row: Callable[[list[Any] | None, list[Any] | None], None],
    ) -> tuple[str, list[tuple[str, sx.SqlType]], QueryRunner]:
        """Start a transient push query; ``on_row(values, tombstone_key)`` gets every row."""
        plan = plan_select(select, self.lookup, persistent=False)
        columns = [(c.name, c.type) for c in plan.columns]
        names = [c.name for c in plan.columns]
        key_names = plan.key_names

        def deliver(key: tuple, _ws: int | None, row: dict[str, Any] | None, _rt: int) -> None:
            if row is None:
                on_row(None, [dict(zip(key_names, key, strict=False)).get(n) for n in names])
            else:
                on_row([row.get(n) for n in names], None)

        src = select.source.name
        qid = f"transient_{src}_{uuid.uuid4().int % 10**19}"
        reset = self._offset_reset(props)
        starts = {}
        if reset != "earliest":
            starts = end_offsets(self.settings, [b.source.topic for b in plan.bindings])
        runner = QueryRunner(
            qid,
            plan,
            self.settings,
            on_row=deliver,
            offset_reset=reset,
            start_offsets=starts,
            limit=select.limit,
            statement=text,
            persistent=False,
            processing_log=self.processing_log,
        )
        self.transient[qid] = runner
        runner.start()
        return qid, columns, runner

    def release_transient(self, qid: str) -> None:
        """Stop a push query without waiting (safe from a cancelled request handler)."""
        runner = self.transient.pop(qid, None)
        if runner is not None:
            runner.request_stop()

    def close_transient(self, qid: str) -> bool:
        runner = self.transient.pop(qid, None)
        if runner is None:
            return False
        runner.stop(timeout=5)
        return True

    # -- lifecycle ------------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 30.0, settle: float = 0.3) -> bool:
        """True once every persistent query has consumed all its input (twice in a row)."""
        deadline = time.monotonic() + timeout
        stable = 0
        last: tuple[int, ...] = ()
        for q in list(self.queries.values()):
            q.caught_up = False  # a fresh answer, not one from before the last produce
            q.idle_probe.set()
        try:
            return self._wait_idle(deadline, settle, stable, last)
        finally:
            for q in list(self.queries.values()):
                q.idle_probe.clear()

    def _wait_idle(self, deadline: float, settle: float, stable: int, last: tuple[int, ...]
                   ) -> bool:
        while time.monotonic() < deadline:
            qs = [q for q in self.queries.values() if q.state == "RUNNING" and q.alive]
            counts = tuple(q.records_in for q in qs) + tuple(q.records_out for q in qs)
            if all(q.caught_up for q in qs) and counts == last:
                stable += 1
                if stable >= 3:
                    return True
            else:
                stable = 0
            last = counts
            time.sleep(settle)
        return False

    def close(self) -> None:
        for q in list(self.transient.values()):
            q.stop(timeout=5)
        for q in list(self.queries.values()):
            q.stop(timeout=10)
            log.info("query %s stopped: %d records in, %d out, %d processing errors, state %s",
                     q.id, q.records_in, q.records_out, q.processing_errors, q.state)
        if self._cmd_producer is not None:
            self._cmd_producer.flush(5)
            self._cmd_producer = None
        if self._log_producer is not None:
            self._log_producer.flush(5)
            self._log_producer = None


def _schema_json(t: sx.SqlType) -> dict[str, Any]:
    if t.name == "ARRAY":
        return {"type": "ARRAY", "fields": None, "memberSchema": _schema_json(t.params[0])}
    if t.name == "MAP":
        return {"type": "MAP", "fields": None, "memberSchema": _schema_json(t.params[1])}
    if t.name == "STRUCT":
        return {
            "type": "STRUCT",
            "memberSchema": None,
            "fields": [{"name": n, "schema": _schema_json(ft)} for n, ft in t.params],
        }
    return {"type": t.name, "fields": None, "memberSchema": None}


def schema_string(columns: list[tuple[str, sx.SqlType]]) -> str:
    return ", ".join(f"`{n}` {t}" for n, t in columns)
