"""The engine: one object that runs ksqlDB statements against the broker, the REST API's and
the benchmarks' way in.

Every statement that changes the metastore is appended to the command topic
(``_confluent-ksql-<service>_command_topic``, as ksqlDB does), and replayed on start, so the
endpoint comes back with its streams, tables and persistent queries after a restart. The work
lives in ``ddl`` (statements that change the metastore), ``queries`` (pull and push queries),
``entities`` (SHOW, DESCRIBE, EXPLAIN) and ``broker`` (topics, the command topic); the state
they share is an ``EngineState``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException

from instore.settings import Settings
from stream_apps.ksqldb import ddl, entities, queries
from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.broker import CommandTopic, TopicAdmin, TopicWriter, command_topic_name
from stream_apps.ksqldb.errors import KsqlError, QueryEndpointError, StatementError
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.processing_log import STREAM as PROCESSING_LOG_STREAM
from stream_apps.ksqldb.processing_log import ProcessingLog, create_statement, topic_name
from stream_apps.ksqldb.queries import PullResult, RowCallback
from stream_apps.ksqldb.runners import QueryRunner
from stream_apps.ksqldb.state import EngineState

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self, settings: Settings, *, service_id: str = "default_", replay: bool = True
    ) -> None:
        self.settings = settings
        self.service_id = service_id
        self.lock = threading.RLock()
        self.started_at = time.time()
        self.command_topic = command_topic_name(service_id)
        admin = TopicAdmin(settings)
        self._log_writer = TopicWriter(settings, topic_name(service_id))
        self.processing_log = ProcessingLog(self._log_writer.write)
        self.state = EngineState(
            settings,
            service_id,
            admin,
            CommandTopic(settings, admin, self.command_topic),
            self.processing_log,
            self._log_writer.topic,
        )
        if replay:
            self._replay()
        self._install_processing_log()

    # -- what callers read ----------------------------------------------------------------------
    @property
    def sources(self) -> dict[str, Source]:
        return self.state.sources

    @property
    def queries(self) -> dict[str, QueryRunner]:
        """The persistent queries by id."""
        return self.state.queries

    @property
    def transient(self) -> dict[str, QueryRunner]:
        """The running push queries by id."""
        return self.state.transient

    @property
    def command_status(self) -> dict[str, dict[str, str]]:
        return self.state.command_status

    @property
    def properties(self) -> dict[str, Any]:
        return self.state.properties

    @property
    def processing_log_topic(self) -> str:
        return self.state.processing_log_topic

    def lookup(self, name: str) -> Source:
        return self.state.lookup(name)

    def list_topics(self) -> dict[str, Any]:
        """The broker's topics (raises KafkaException when no broker answers)."""
        return self.state.admin.topics()

    # -- start ----------------------------------------------------------------------------------
    def _replay(self) -> None:
        records = self.state.commands.read()
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
        if records:
            log.info(
                "replayed %d commands: %d sources, %d queries",
                len(records),
                len(self.sources),
                len(self.queries),
            )

    def _install_processing_log(self) -> None:
        """The log topic and the KSQL_PROCESSING_LOG stream over it (a built-in, not a command:
        ksqlDB's ksql.logging.processing.stream.auto.create)."""
        if PROCESSING_LOG_STREAM in self.sources:
            return
        try:
            self.state.admin.ensure(
                self.processing_log_topic, 1, 1, compact=False, kind="STREAM"
            )
            (stmt,) = sx.parse(create_statement(self.processing_log_topic))
            assert isinstance(stmt, sx.CreateSource)
            ddl.create_source(self.state, stmt, {}, replay=True)
        except (KsqlError, KafkaException) as exc:
            log.warning("processing log stream not installed: %s", exc)

    # -- statements (the /ksql endpoint) --------------------------------------------------------
    def execute(self, text: str, props: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run every statement of ``text`` (the /ksql endpoint). On error raises KsqlError with
        ``entities`` (those done before) and ``statement`` attributes."""
        props = dict(props or {})
        done: list[dict[str, Any]] = []
        for stmt in sx.parse(text):
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
                done.append(entity)
            except KsqlError as exc:
                exc.message = sx.locate(exc.message, stmt.text)
                exc.entities = done  # type: ignore[attr-defined]
                exc.statement = stmt.text  # type: ignore[attr-defined]
                raise
        return done

    def execute_statement(
        self,
        stmt: sx.Statement,
        props: dict[str, Any],
        *,
        replay: bool = False,
        query_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one statement; its REST entity."""
        state = self.state
        match stmt:
            case sx.CreateSource():
                return ddl.create_source(state, stmt, props, replay)
            case sx.CreateAs():
                return ddl.create_as(state, stmt, props, replay, query_id)
            case sx.InsertInto():
                return ddl.insert_into(state, stmt, props, replay, query_id)
            case sx.InsertValues():
                return ddl.insert_values(state, stmt)
            case sx.Drop():
                return ddl.drop(state, stmt, props, replay)
            case sx.Terminate():
                return ddl.terminate(state, stmt, props, replay)
            case sx.Show():
                return entities.show(state, stmt)
            case sx.Describe():
                return entities.describe(state, stmt)
            case sx.Explain():
                return entities.explain(state, stmt)
            case sx.SetProperty():
                return entities.property_set()
            case sx.Query():
                msg = (
                    "The following statement types should be issued to the websocket endpoint "
                    "'/query':\n\t* PRINT\n\t* SELECT"
                )
                raise QueryEndpointError(msg)
        msg = f"Unsupported statement: {stmt.text}"
        raise StatementError(msg)

    def insert_rows(self, target: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The /inserts-stream endpoint: write JSON rows to a stream; one ack per row."""
        return ddl.insert_rows(self.state, target, rows)

    # -- queries (the /query and /query-stream endpoints) ---------------------------------------
    def parse_query(self, text: str) -> sx.Select:
        return queries.parse_query(text)

    def pull(self, select: sx.Select) -> PullResult:
        return queries.pull(self.state, select)

    def push(
        self, select: sx.Select, props: dict[str, Any], text: str, on_row: RowCallback
    ) -> tuple[str, list[tuple[str, sx.SqlType]], QueryRunner]:
        """Start a transient push query; ``on_row(values, tombstone_key)`` gets every row."""
        return queries.push(self.state, select, props, text, on_row)

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
        for q in list(self.queries.values()):
            q.caught_up = False  # a fresh answer, not one from before the last produce
            q.idle_probe.set()
        try:
            return self._wait_idle(deadline, settle)
        finally:
            for q in list(self.queries.values()):
                q.idle_probe.clear()

    def _wait_idle(self, deadline: float, settle: float) -> bool:
        stable = 0
        last: tuple[int, ...] = ()
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
        self.state.commands.close()
        self._log_writer.close()
