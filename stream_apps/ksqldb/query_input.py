"""Where a query's consumer reads and how far it got: table topics from the beginning (a
restart rebuilds their state) and bootstrapped to their end offsets before stream records are
processed; stream topics from the committed offset, else from the query's start (its offset
reset); two joined streams taken in timestamp order; the positions reached, committed once
what they produced is flushed (at-least-once); whether everything has been read."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from stream_apps.ksqldb.joins import TimestampOrder
from stream_apps.ksqldb.plan import Plan

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0


class QueryInput:
    """The input partitions of one query (``stream_partitions``: a worker's share of the
    stream partitions, None for all)."""

    def __init__(
        self,
        plan: Plan,
        by_topic: dict[str, list[int]],
        *,
        query_id: str,
        persistent: bool,
        offset_reset: str,
        start_offsets: dict[tuple[str, int], int],
        stream_partitions: set[tuple[str, int]] | None,
    ) -> None:
        self.plan = plan
        self.by_topic = by_topic
        self.query_id = query_id
        self.persistent = persistent
        self.offset_reset = offset_reset
        self.start_offsets = start_offsets
        self.stream_partitions = stream_partitions
        self.tps: list[TopicPartition] = []  # the assignment, with the offsets it started at
        self.table_ends: dict[tuple[str, int], int] = {}  # each table partition's end at start
        self.stream_topics: set[str] = set()
        self.positions: dict[tuple[str, int], int] = {}  # the next offset to process
        self.paused: list[TopicPartition] = []  # streams held back while tables bootstrap
        self.bootstrapping = False
        self.order: TimestampOrder | None = None
        self.dirty = False  # processed records not committed yet
        self.last_commit = 0.0
        self.last_check = 0.0
        self._fetched: dict[tuple[str, int], int] = {}  # next offset fetched, per partition
        self._last_live_check = 0.0

    def start(self, consumer: Any) -> None:
        """Assign the input partitions; pin where a persistent query starts; hold the streams
        back while the tables bootstrap; order two joined streams by timestamp."""
        self._assignment(consumer)
        tps, stream_topics = self.tps, self.stream_topics
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
                    log.debug("query %s: initial commit failed: %s", self.query_id, exc)
        self.last_commit = time.monotonic()
        self.bootstrapping = bool(self.table_ends) and bool(stream_topics)
        if self.bootstrapping:
            self.paused = [
                TopicPartition(tp.topic, tp.partition) for tp in tps if tp.topic in stream_topics
            ]
            consumer.pause(self.paused)
        # a query that joins two streams takes their records in timestamp order
        if sum(1 for b in self.plan.bindings if b.role in ("driver", "stream2")) > 1 and (
            self.plan.kind.startswith("stream")
        ):
            self.order = TimestampOrder(
                [(tp.topic, tp.partition) for tp in tps if tp.topic in stream_topics]
            )

    def _assignment(self, consumer: Any) -> None:
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
                    log.warning("query %s could not read committed offsets: %s", self.query_id, exc)
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
        self.tps, self.table_ends, self.stream_topics = tps, table_ends, stream_topics

    def fetch(self, consumer: Any) -> list[Any]:
        """The next records to process (errors among them)."""
        msgs = consumer.consume(500, timeout=0.05)
        if self.order is not None:
            msgs = self._in_timestamp_order(consumer, self.order, msgs)
        return msgs

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

    def resume_when_bootstrapped(self, consumer: Any) -> None:
        """Let the streams go once every table partition is read to its end at start."""
        if self.bootstrapping and all(
            self.positions.get(k, 0) >= hi for k, hi in self.table_ends.items()
        ):
            consumer.resume(self.paused)
            self.bootstrapping = False

    def commit_due(self, now: float, idle: bool) -> bool:
        """Whether to commit now: processed records, and a second since the last commit or
        nothing more to process."""
        return self.dirty and self.persistent and (
            now - self.last_commit > COMMIT_INTERVAL_S or idle
        )

    def commit(self, consumer: Any, producer: Any) -> None:
        """Commit the stream positions, once ``producer`` (None: a push query) has flushed
        what they produced."""
        if producer is not None:
            remaining = producer.flush(10)
            if remaining:
                return
        offsets = [
            TopicPartition(t, p, off)
            for (t, p), off in self.positions.items()
            if t in self.stream_topics
        ]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.debug("query %s commit failed: %s", self.query_id, exc)

    def at_end(self, consumer: Any, producer: Any, caught_up: bool) -> bool:
        """Whether every input partition is read to its end and ``producer`` has nothing
        pending (``caught_up``: the last answer, given again when asked too often)."""
        tps, positions = self.tps, self.positions
        if producer is not None and len(producer) > 0:
            producer.flush(5)
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
            return caught_up  # nothing new since the last live check said so
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
