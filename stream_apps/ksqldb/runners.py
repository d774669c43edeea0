"""Queries on Kafka: a thread per query that consumes its input topics, drives its QueryCore
and writes the output topic (persistent) or hands rows to a callback (transient push query).

At-least-once: a persistent query commits the offsets of its stream inputs (group
``_confluent-ksql-default_query_<ID>``) only after its producer has flushed what they produced.
Table inputs are always read from the beginning, so a restart rebuilds their state; tables are
bootstrapped to their end offsets before stream records are processed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, TopicPartition

from instore.kafka import make_consumer, make_producer
from instore.settings import Settings
from stream_apps.ksqldb.core import QueryCore
from stream_apps.ksqldb.joins import TimestampOrder
from stream_apps.ksqldb.metastore import DeserializationError, Source
from stream_apps.ksqldb.plan import Plan
from stream_apps.ksqldb.processing_log import ProcessingLog
from stream_apps.ksqldb.workers import Worker, eligible

log = logging.getLogger(__name__)

RowSink = Callable[[tuple, "int | None", "dict[str, Any] | None", int], None]


def end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """High watermarks of every partition of ``topics``."""
    consumer = make_consumer(settings)
    try:
        md = consumer.list_topics(timeout=10)
        out: dict[tuple[str, int], int] = {}
        for t in topics:
            tmd = md.topics.get(t)
            if tmd is None or tmd.error is not None:
                continue
            for p in tmd.partitions:
                _lo, hi = consumer.get_watermark_offsets(
                    TopicPartition(t, p), timeout=10, cached=False
                )
                out[(t, p)] = hi
        return out
    finally:
        consumer.close()


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
        self._last_live_check = 0.0
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
        self._fetched: dict[tuple[str, int], int] = {}  # next offset fetched, per partition
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
    def _assignment(
        self, consumer: Any
    ) -> tuple[list[TopicPartition], dict[tuple[str, int], int], set[str]]:
        md = consumer.list_topics(timeout=10)
        tps: list[TopicPartition] = []
        table_topics = {
            b.source.topic
            for b in self.plan.bindings
            if b.role == "table" or self.plan.kind.startswith("table")
        }
        stream_topics = set(self.by_topic) - table_topics
        committed: dict[tuple[str, int], int] = {}
        parts: list[TopicPartition] = []
        for topic in self.by_topic:
            tmd = md.topics.get(topic)
            if tmd is None or tmd.error is not None:
                msg = f"topic {topic} does not exist"
                raise RuntimeError(msg)
            parts.extend(TopicPartition(topic, p) for p in sorted(tmd.partitions))
        aggregating = self.plan.kind == "stream_agg"
        if self.persistent and not aggregating:
            stream_parts = [tp for tp in parts if tp.topic in stream_topics]
            if stream_parts:
                try:
                    for tp in consumer.committed(stream_parts, timeout=10):
                        if tp.offset >= 0:
                            committed[(tp.topic, tp.partition)] = tp.offset
                except KafkaException as exc:
                    log.warning("query %s could not read committed offsets: %s", self.id, exc)
        table_ends: dict[tuple[str, int], int] = {}
        if self.stream_partitions is not None:
            parts = [tp for tp in parts if tp.topic in table_topics
                     or (tp.topic, tp.partition) in self.stream_partitions]
        for tp in parts:
            key = (tp.topic, tp.partition)
            if tp.topic in table_topics:
                tps.append(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
                _lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                if hi > 0:
                    table_ends[key] = hi
            elif key in committed:
                tps.append(TopicPartition(tp.topic, tp.partition, committed[key]))
            elif self.offset_reset == "earliest":
                tps.append(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
            elif key in self.start_offsets:
                tps.append(TopicPartition(tp.topic, tp.partition, self.start_offsets[key]))
            else:
                tps.append(TopicPartition(tp.topic, tp.partition, OFFSET_END))
        return tps, table_ends, stream_topics

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self.profile is not None:
                self.profile.disable()

    def _loop(self) -> None:
        consumer = None
        try:
            group = (
                f"_confluent-ksql-default_query_{self.id}"
                if self.persistent
                else f"_confluent-ksql-default_transient_{self.id}_{time.time_ns()}"
            )
            consumer = make_consumer(
                self.settings,
                group_id=group,
                **{"fetch.wait.max.ms": 20, "enable.auto.offset.store": False},
            )
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
            self._start_workers(consumer)
            tps, table_ends, stream_topics = self._assignment(consumer)
            consumer.assign(tps)
            if self.persistent and self.plan.kind != "stream_agg":
                # Pin where a new query starts (e.g. 'latest' = the end when it was created), so
                # a restart before it processed anything resumes there, not at the new end.
                start = [TopicPartition(tp.topic, tp.partition, max(tp.offset, 0))
                         for tp in tps if tp.topic in stream_topics
                         and (tp.offset >= 0 or tp.offset == OFFSET_BEGINNING)]
                if start:
                    try:
                        consumer.commit(offsets=start, asynchronous=False)
                    except KafkaException as exc:
                        log.debug("query %s: initial commit failed: %s", self.id, exc)
            bootstrapping = bool(table_ends) and bool(stream_topics)
            paused: list[TopicPartition] = []
            if bootstrapping:
                paused = [
                    TopicPartition(tp.topic, tp.partition)
                    for tp in tps
                    if tp.topic in stream_topics
                ]
                consumer.pause(paused)
            positions: dict[tuple[str, int], int] = {}
            # a query that joins two streams takes their records in timestamp order
            order = None
            if sum(1 for b in self.plan.bindings if b.role in ("driver", "stream2")) > 1 and (
                self.plan.kind.startswith("stream")
            ):
                order = TimestampOrder(
                    [(tp.topic, tp.partition) for tp in tps if tp.topic in stream_topics]
                )
            last_commit = time.monotonic()
            last_check = 0.0
            profiling = False
            dirty = False
            while not self._stop.is_set():
                if self.error is not None:
                    raise RuntimeError(self.error)
                if self.profile is not None and not profiling:
                    self.profile.enable()  # in this thread: cProfile profiles the caller's
                    profiling = True
                t_wait = time.perf_counter()
                msgs = consumer.consume(500, timeout=0.05)
                if order is not None:
                    msgs = self._in_timestamp_order(consumer, order, msgs)
                t_busy = time.perf_counter()
                c_busy = time.thread_time()
                self.wait_s += t_busy - t_wait
                if msgs:  # busy from now on (wait_idle must not see a stale "caught up")
                    self.caught_up = False
                    self.records_in += len(msgs)
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
                    dirty = True
                    self.last_active = time.monotonic()
                    self.busy_s += time.perf_counter() - t_busy
                    self.cpu_s += time.thread_time() - c_busy
                if self._producer is not None:
                    self._producer.poll(0)
                if bootstrapping and all(positions.get(k, 0) >= hi for k, hi in table_ends.items()):
                    consumer.resume(paused)
                    bootstrapping = False
                now = time.monotonic()
                if dirty and self.persistent and (now - last_commit > 1.0 or not msgs):
                    self._commit(consumer, positions, stream_topics)
                    last_commit = now
                    dirty = False
                workers_idle = self._drain_workers() if self._workers else True
                if (
                    not msgs
                    and now - last_check > 0.1
                    and (self.idle_probe.is_set() or self.probe_idle)
                ):
                    # only while someone waits for idleness (tests, bench): no broker round
                    # trips on the serving path otherwise
                    last_check = now
                    self.caught_up = (
                        not bootstrapping
                        and self._at_end(consumer, tps, positions)
                        and workers_idle
                    )
            if self._producer is not None:
                self._producer.flush(10)
            if self.persistent and dirty:
                self._commit(consumer, positions, stream_topics)
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

    def _in_timestamp_order(
        self, consumer: Any, order: TimestampOrder, msgs: list[Any]
    ) -> list[Any]:
        """Buffer what was fetched; hand back what Kafka Streams would process now."""
        fetched = self._fetched
        errors = [m for m in msgs if m.error() is not None]  # handled by the loop as usual
        for m in msgs:
            if m.error() is not None:
                continue
            key = (m.topic(), m.partition())
            fetched[key] = m.offset() + 1
            order.add(key, m.timestamp()[1], m)

        def lagging(key: tuple[str, int]) -> bool:
            try:
                _lo, hi = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            except KafkaException:
                return False
            return hi > fetched.get(key, 0) if hi is not None and hi >= 0 else False

        return errors + order.take(lagging, time.monotonic() * 1000)

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

    def _commit(
        self, consumer: Any, positions: dict[tuple[str, int], int], stream_topics: set[str]
    ) -> None:
        if self._producer is not None:
            remaining = self._producer.flush(10)
            if remaining:
                return
        offsets = [
            TopicPartition(t, p, off) for (t, p), off in positions.items() if t in stream_topics
        ]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.debug("query %s commit failed: %s", self.id, exc)

    def _at_end(
        self, consumer: Any, tps: list[TopicPartition], positions: dict[tuple[str, int], int]
    ) -> bool:
        if self._producer is not None and len(self._producer) > 0:
            self._producer.flush(5)
            return False
        # Cheap first: the watermarks librdkafka cached from fetch responses (no round trip).
        for tp in tps:
            pos = positions.get((tp.topic, tp.partition))
            if pos is None:
                continue
            _lo, hi = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                     cached=True)
            if hi is not None and hi > pos:
                return False
        now = time.monotonic()
        if now - self._last_live_check < 0.3:
            return self.caught_up  # nothing new since the last live check said so
        self._last_live_check = now
        for tp in tps:
            try:
                lo, hi = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=5, cached=False
                )
            except KafkaException:
                return False
            pos = positions.get((tp.topic, tp.partition))
            if pos is None:
                # never read: at end only if empty (or we started at the end)
                started_before_end = tp.offset == OFFSET_BEGINNING or 0 <= tp.offset < hi
                if hi > lo and started_before_end:
                    return False
                continue
            if pos < hi:
                return False
        return True
