"""Queries on Kafka: a thread per query that consumes its input topics, drives its QueryCore
and writes the output topic (persistent) or hands rows to a callback (transient push query).

At-least-once: a persistent query commits the offsets of its stream inputs (group
``_confluent-ksql-default_query_<ID>``) only after its producer has flushed what they produced.
Table inputs are always read from the beginning, so a restart rebuilds their state; tables are
bootstrapped to their end offsets before stream records are processed (``query_input``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from instore import groups
from instore.kafka import make_consumer, make_producer
from instore.settings import Settings
from stream_apps.ksqldb.core import QueryCore
from stream_apps.ksqldb.metastore import DeserializationError, Source
from stream_apps.ksqldb.plan import Plan
from stream_apps.ksqldb.processing_log import ProcessingLog
from stream_apps.ksqldb.query_input import QueryInput
from stream_apps.ksqldb.workers import Worker, eligible

log = logging.getLogger(__name__)

RowSink = Callable[[tuple, "int | None", "dict[str, Any] | None", int], None]


class QueryRunner:
    """One running query. ``sink`` is a Source to write (persistent) or a callback (transient)."""

    def __init__(
        self,
        query_id: str,
        plan: Plan,
        settings: Settings,
        *,
        sink: Source | None = None,
        on_row: RowSink | None = None,
        offset_reset: str = "latest",
        start_offsets: dict[tuple[str, int], int] | None = None,
        limit: int | None = None,
        statement: str = "",
        persistent: bool = True,
        processing_log: ProcessingLog | None = None,
        stream_partitions: set[tuple[str, int]] | None = None,
        probe_idle: bool = False,
        workers: int = 1,
        worker_spec: dict[str, Any] | None = None,
    ) -> None:
        self.id = query_id
        self.plan = plan
        self.settings = settings
        self.sink = sink
        self.on_row = on_row
        self.offset_reset = offset_reset
        self.start_offsets = start_offsets or {}
        self.limit = limit
        self.statement = statement
        self.persistent = persistent
        self.processing_log = processing_log
        # a share of the stream partitions (worker processes: see workers.py)
        self.stream_partitions = stream_partitions
        self.probe_idle = probe_idle  # always track caught_up (a worker reports it)
        self.workers = workers
        self.worker_spec = worker_spec
        self._workers: list[Worker] = []
        self.state = "PENDING"
        self.error: str | None = None
        self.processing_errors = 0
        self.last_processing_error: str | None = None
        self.records_in = 0
        self.records_out = 0
        self.caught_up = False
        self.last_active = time.monotonic()
        self.consumed: dict[str, int] = {}  # records read per input topic
        self.limit_reached = False
        self._stop = threading.Event()
        self.idle_probe = threading.Event()  # set while Engine.wait_idle watches
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._produce: Any = None
        # perf counters: seconds spent processing records (decode, evaluate, produce) and
        # waiting in consume; an optional cProfile.Profile of this query's thread (the bench)
        self.busy_s = 0.0
        self.cpu_s = 0.0  # CPU time of this thread while processing (time.thread_time)
        self.wait_s = 0.0
        self.profile: Any = None
        self._topic = ""
        self._lock = threading.Lock()
        self.core = QueryCore(plan, self._emit)
        if sink is not None and sink.timestamp:
            self.core.stamp_from(sink.timestamp)
        if sink is not None and on_row is None and sink.value_format == "JSON" and sink.wrap_single:
            value_names = [n for n, _ in sink.value_columns]
            self.core.bind_encoded(
                value_names, sink.encode_key, self._emit_encoded, self._emit_encoded_many
            )
        if plan.errors is not None:
            plan.errors.target = self._processing_error
        self.by_topic: dict[str, list[int]] = {}
        for b in plan.bindings:
            self.by_topic.setdefault(b.source.topic, []).append(b.slot)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.state = "RUNNING"
        self._thread = threading.Thread(target=self._run, name=f"ksql-{self.id}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to finish (it closes its clients itself); returns at once."""
        self._stop.set()
        if self.state == "RUNNING":
            self.state = "TERMINATED"

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.state == "RUNNING":
            self.state = "TERMINATED"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def worker_count(self) -> int:
        return 1 + len(self._workers)

    def _start_workers(self, consumer: Any) -> None:
        """Split the stream partitions over this thread and ``workers - 1`` processes."""
        if self.workers <= 1 or self.worker_spec is None or not eligible(self.plan):
            return
        md = consumer.list_topics(timeout=10)
        table_topics = {b.source.topic for b in self.plan.bindings if b.role == "table"}
        parts = sorted(
            (t, p)
            for t in self.by_topic
            if t not in table_topics and md.topics.get(t) is not None
            for p in md.topics[t].partitions
        )
        n = min(self.workers, len(parts))
        if n <= 1:
            return
        self.stream_partitions = {tp for i, tp in enumerate(parts) if i % n == 0}
        for w in range(1, n):
            share = {tp for i, tp in enumerate(parts) if i % n == w}
            self._workers.append(Worker(self.worker_spec, share))
        log.info("query %s runs on %d processes", self.id, n)

    def _drain_workers(self) -> bool:
        """Apply worker reports; True when every worker says it is caught up."""
        ok = True
        for w in self._workers:
            w.drain(self)
            ok = ok and w.reported and w.caught_up
        return ok

    def _stop_workers(self) -> None:
        for w in self._workers:
            w.stop()
        for w in self._workers:
            w.drain(self)  # the last counts

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _processing_error(self, message: str) -> None:
        """An expression failed on a row: logged, the row goes on with a null."""
        if self.processing_log is not None:
            self.processing_log.processing(self.id, message)
        self._count_error(message)

    def _deserialization_error(self, topic: str, target: str, message: str,
                               raw: bytes | None) -> None:
        """A record that cannot be read: logged with its bytes, then skipped."""
        if self.processing_log is not None:
            self.processing_log.deserialization(self.id, topic, target, message, raw)
        self._count_error(message)

    def _count_error(self, message: str) -> None:
        self.processing_errors += 1
        self.last_processing_error = message
        if self.processing_errors <= 5 or self.processing_errors % 1000 == 0:
            log.warning(
                "query %s processing error (%d so far): %s",
                self.id,
                self.processing_errors,
                message,
            )

    # -- output ---------------------------------------------------------------------------------
    def _emit(
        self, key: tuple, wstart: int | None, row: dict[str, Any] | None, rowtime: int
    ) -> None:
        if self.limit_reached:
            return
        self.records_out += 1
        if self.on_row is not None:
            self.on_row(key, wstart, row, rowtime)
            if self.limit is not None and self.records_out >= self.limit:
                self.limit_reached = True
                self._stop.set()
            return
        sink = self.sink
        assert sink is not None
        value = None if row is None else sink.encode_value(row)
        kbytes = sink.encode_key(key, wstart)
        ts = rowtime if rowtime >= 0 else None
        while True:
            try:
                if ts is None:
                    self._producer.produce(sink.topic, key=kbytes, value=value)
                else:
                    self._producer.produce(sink.topic, key=kbytes, value=value, timestamp=ts)
                break
            except BufferError:
                self._producer.poll(0.05)

    def _emit_encoded(self, key: bytes | None, value: bytes, rowtime: int) -> None:
        """A record the core encoded itself (the fused EXPLODE path of a persistent query)."""
        self.records_out += 1
        # positional: topic, value, key, partition (-1: the partitioner), on_delivery, timestamp
        args = (self._topic, value, key, -1, None, rowtime if rowtime >= 0 else 0)
        try:
            self._produce(*args)
        except BufferError:
            while True:
                self._producer.poll(0.05)
                try:
                    self._produce(*args)
                    break
                except BufferError:
                    continue

    def _emit_encoded_many(self, key: bytes | None, values: list[bytes], rowtime: int) -> None:
        """The records of one input row's EXPLODE, produced in one tight loop."""
        self.records_out += len(values)
        produce = self._produce
        topic = self._topic
        ts = rowtime if rowtime >= 0 else 0
        for v in values:
            try:
                produce(topic, v, key, -1, None, ts)
            except BufferError:
                while True:
                    self._producer.poll(0.05)
                    try:
                        produce(topic, v, key, -1, None, ts)
                        break
                    except BufferError:
                        continue

    def _delivery(self, err: Any, msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = f"Error producing to {msg.topic()}: {err}"
            if self.processing_log is not None:
                self.processing_log.production(self.id, self.error)

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self.profile is not None:
                self.profile.disable()

    def _loop(self) -> None:
        consumer = None
        try:
            consumer = self._consumer()
            self._open_producer()
            self._start_workers(consumer)
            inp = QueryInput(
                self.plan,
                self.by_topic,
                query_id=self.id,
                persistent=self.persistent,
                offset_reset=self.offset_reset,
                start_offsets=self.start_offsets,
                stream_partitions=self.stream_partitions,
            )
            inp.start(consumer)
            profiling = False
            while not self._stop.is_set():
                if self.error is not None:
                    raise RuntimeError(self.error)
                if self.profile is not None and not profiling:
                    self.profile.enable()  # in this thread: cProfile profiles the caller's
                    profiling = True
                self._poll(consumer, inp)
            if self._producer is not None:
                self._producer.flush(10)
            if self.persistent and inp.dirty:
                inp.commit(consumer, self._producer)
            self._stop_workers()
        except Exception as exc:  # a failing query is reported, it never takes the others down
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            self.state = "ERROR"
            log.exception("query %s failed", self.id)
            self._stop_workers()
        finally:
            if consumer is not None:
                try:
                    consumer.close()
                except (KafkaException, RuntimeError):
                    log.debug("query %s: consumer close failed", self.id)
            self._producer = None  # drop the client now, not whenever GC runs
            if self.state == "RUNNING" and not self.persistent:
                self.state = "DONE"

    def _consumer(self) -> Any:
        group = (
            groups.ksqldb_query("default_", self.id)
            if self.persistent
            else groups.ksqldb_transient("default_", self.id, time.time_ns())
        )
        return make_consumer(
            self.settings,
            group_id=group,
            **{"fetch.wait.max.ms": 20, "enable.auto.offset.store": False},
        )

    def _open_producer(self) -> None:
        """A persistent query's producer (a push query hands its rows to ``on_row``)."""
        if self.on_row is None:
            # Only failed deliveries call back (one Python call per record is the price
            # otherwise); lz4 batches cost the broker a third of uncompressed ones.
            self._producer = make_producer(
                self.settings,
                on_delivery=self._delivery,
                **{"delivery.report.only.error": True, "compression.type": "lz4"},
            )
            self._produce = self._producer.produce
            self._topic = self.sink.topic if self.sink is not None else ""

    def _poll(self, consumer: Any, inp: QueryInput) -> None:
        """One round: consume and process what came, commit, resume the streams once the
        tables are read, say whether the query is caught up."""
        t_wait = time.perf_counter()
        msgs = inp.fetch(consumer)
        t_busy = time.perf_counter()
        c_busy = time.thread_time()
        self.wait_s += t_busy - t_wait
        if msgs:  # busy from now on (wait_idle must not see a stale "caught up")
            self.caught_up = False
            self.records_in += len(msgs)
        positions = inp.positions
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() in (KafkaError._PARTITION_EOF,):  # noqa: SLF001
                    continue
                raise KafkaException(err)
            self._process(m)
            positions[(m.topic(), m.partition())] = m.offset() + 1  # type: ignore[index,operator]
            if self._stop.is_set():
                break
        if msgs:
            inp.dirty = True
            self.last_active = time.monotonic()
            self.busy_s += time.perf_counter() - t_busy
            self.cpu_s += time.thread_time() - c_busy
        if self._producer is not None:
            self._producer.poll(0)
        inp.resume_when_bootstrapped(consumer)
        now = time.monotonic()
        if inp.commit_due(now, idle=not msgs):
            inp.commit(consumer, self._producer)
            inp.last_commit = now
            inp.dirty = False
        workers_idle = self._drain_workers() if self._workers else True
        if not msgs and now - inp.last_check > 0.1 and (self.idle_probe.is_set() or self.probe_idle):
            # only while someone waits for idleness (tests, bench): no broker round
            # trips on the serving path otherwise
            inp.last_check = now
            self.caught_up = (
                not inp.bootstrapping
                and inp.at_end(consumer, self._producer, self.caught_up)
                and workers_idle
            )

    def _process(self, m: Any) -> None:
        topic = m.topic()
        self.consumed[topic] = self.consumed.get(topic, 0) + 1
        slots = self.by_topic.get(topic, ())
        for slot in slots:
            src = self.plan.bindings[slot].source
            try:
                key, wstart = src.decode_key(m.key())
            except DeserializationError as exc:
                self._deserialization_error(topic, "key", str(exc), m.key())
                continue
            try:
                raw = m.value()
                row = None
                if raw is not None:
                    row = src.decode_value(raw)
                    for (name, _), v in zip(src.key_columns, key, strict=False):
                        row[name] = v
                    ts_type, ts = m.timestamp()
                    if src.timestamp:
                        tv = row.get(src.timestamp)
                        if tv is None:
                            self._processing_error(f"null timestamp column {src.timestamp}")
                            continue
                        ts = int(tv)
                    row["ROWTIME"] = ts
                    row["ROWPARTITION"] = m.partition()
                    row["ROWOFFSET"] = m.offset()
                    if wstart is not None and src.window is not None:
                        row["WINDOWSTART"], row["WINDOWEND"] = src.window_bounds(wstart)
                    rowtime = ts
                else:
                    rowtime = m.timestamp()[1]
            except DeserializationError as exc:
                self._deserialization_error(topic, "value", str(exc), m.value())
                continue
            self.core.on_record(slot, key, wstart, row, rowtime)
