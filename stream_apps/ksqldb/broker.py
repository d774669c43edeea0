"""What the engine asks of the broker for itself: topics (list, create, delete), the command
topic (every statement that changes the metastore, appended, and read back on start) and the
processing-log topic (one entry per failed record).

The command topic is ``_confluent-ksql-<service id>_command_topic``, as ksqlDB names it; each
record is ``{"statement", "streamsProperties", "queryId"}``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from instore.kafka import make_admin, make_consumer, make_producer
from instore.settings import Settings
from stream_apps.ksqldb.errors import StatementError

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 30


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


def command_topic_name(service_id: str) -> str:
    return f"_confluent-ksql-{service_id}_command_topic"


class TopicAdmin:
    """The topics a statement reads, creates or deletes."""

    def __init__(self, settings: Settings) -> None:
        self._admin = make_admin(settings)

    def topics(self) -> dict[str, Any]:
        """Topic name -> metadata (raises KafkaException when no broker answers)."""
        return self._admin.list_topics(timeout=10).topics

    def ensure(
        self, name: str, partitions: int | None, replicas: int, *, compact: bool, kind: str
    ) -> int:
        """The partitions of topic ``name``, created when missing (``partitions`` None: it
        must exist); refused in ksqlDB's words when it exists with other partitions."""
        topics = self.topics()
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
        self._create(name, partitions, replicas, compact)
        return partitions

    def _create(self, name: str, partitions: int, replicas: int, compact: bool) -> None:
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
                    msg = f"Could not create topic {name}: {exc}"
                    raise StatementError(msg) from None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and name not in self.topics():
            time.sleep(0.05)

    def delete(self, name: str) -> None:
        """Delete a topic (DROP ... DELETE TOPIC); a failure is logged, not raised."""
        futs = self._admin.delete_topics([name], operation_timeout=10)
        for fut in futs.values():
            try:
                fut.result()
            except KafkaException as exc:
                log.warning("could not delete topic %s: %s", name, exc)


class CommandTopic:
    """The statements that changed the metastore, in order: appended as they run, read back
    when the engine starts (the replay)."""

    def __init__(self, settings: Settings, admin: TopicAdmin, name: str) -> None:
        self.settings = settings
        self.admin = admin
        self.name = name
        self._producer: Any = None

    def append(self, statement: str, props: dict[str, Any], query_id: str | None) -> None:
        if self._producer is None:
            self.admin.ensure(self.name, 1, 1, compact=False, kind="stream")
            self._producer = make_producer(self.settings)
        body = {"statement": statement, "streamsProperties": props, "queryId": query_id}
        self._producer.produce(self.name, value=orjson.dumps(body))
        self._producer.flush(10)

    def read(self) -> list[dict[str, Any]]:
        """Every command so far (none when the topic is missing or no broker answers)."""
        try:
            if self.name not in self.admin.topics():
                return []
        except KafkaException:
            log.warning("no broker answers: starting with an empty metastore")
            return []
        consumer = make_consumer(self.settings)
        records: list[dict[str, Any]] = []
        try:
            tp = TopicPartition(self.name, 0)
            _lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if hi <= 0:
                return []
            consumer.assign([TopicPartition(self.name, 0, 0)])
            deadline = time.monotonic() + REPLAY_TIMEOUT_S
            while time.monotonic() < deadline:
                m = consumer.poll(0.5)
                if m is None or m.error() is not None:
                    continue
                records.append(orjson.loads(m.value() or b"{}"))
                if (m.offset() or 0) + 1 >= hi:
                    break
        finally:
            consumer.close()
        return records

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None


class TopicWriter:
    """Appends records to one topic from any thread (the processing log's entries), its
    producer made on the first record."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._lock = threading.Lock()
        self._producer: Any = None

    def write(self, value: bytes, ts: int) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = make_producer(self.settings)
            producer = self._producer
        try:
            producer.produce(self.topic, value=value, timestamp=ts)
        except BufferError:
            producer.poll(0.1)
            producer.produce(self.topic, value=value, timestamp=ts)
        producer.poll(0)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
