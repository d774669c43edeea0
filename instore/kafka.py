"""confluent-kafka producer/consumer/admin factories that work unchanged on Confluent Cloud.

Every producer is idempotent with ``acks=all`` (no duplicate or reordered record when a broker
fails over) and uses the murmur2 partitioner, so keys land on the same partitions as from Java,
Faust and ksqlDB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from instore import topics as t
from instore.errors import InstoreError
from instore.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnavailable(InstoreError, RuntimeError):
    pass


_RDKAFKA_LOG = logging.getLogger("librdkafka")


def client_config(settings: Settings) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        # librdkafka's own log lines go through Python logging, not straight to stderr.
        "logger": _RDKAFKA_LOG,
        # Reconnect attempts back off exponentially up to 1 s, as Java clients do (librdkafka
        # allows 10 s): a client that lost its broker for a few seconds (a restart) is back
        # within a second of it, not up to ten seconds later.
        "reconnect.backoff.max.ms": 1000,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl.mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl.username"] = settings.kafka_sasl_username or ""
        cfg["sasl.password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        )
    if settings.kafka_ssl_ca_location:
        cfg["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return cfg


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    cfg = client_config(settings) | {
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.kafka_compression,
        "message.timeout.ms": 120_000,
        "queue.buffering.max.messages": 1_000_000,
    }
    cfg.update(overrides)
    return cfg


def consumer_config(settings: Settings, group_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    cfg = client_config(settings) | {
        "group.id": group_id or f"instore-reader-{time.time_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": settings.consumer_fetch_wait_ms,
    }
    cfg.update(overrides)
    return cfg


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


class NotDelivered(InstoreError, RuntimeError):
    pass


class KafkaFatal(InstoreError, RuntimeError):
    """A fatal error of a librdkafka client: it will not consume or produce again."""


class CheckedProducer(Producer):  # type: ignore[misc]
    """A producer for commands that write records and then say so: it counts the records the
    broker did not take, and :meth:`finish` raises :class:`NotDelivered` (one sentence) unless
    every record was delivered."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self.failed = 0
        self.first_error: str | None = None
        self.timeout_s = timeout_s
        self.bootstrap = settings.bootstrap_servers
        super().__init__(producer_config(
            settings, on_delivery=self._on_delivery, **{"delivery.report.only.error": True,
                                                        "message.timeout.ms": int(timeout_s * 1000)}))

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = f"{msg.topic()}: {err.str()}"

    def finish(self) -> None:
        left = self.flush(self.timeout_s)
        if left or self.failed:
            why = self.first_error or f"no acknowledgement within {self.timeout_s:.0f} s"
            msg = (f"{left + self.failed:,} records were not delivered to Kafka at "
                   f"{self.bootstrap} ({why})")
            raise NotDelivered(msg)


def command_producer(settings: Settings, timeout_s: float = 30.0) -> CheckedProducer:
    """Wait for the broker (KafkaUnavailable, one sentence, if it does not answer), then a
    :class:`CheckedProducer`."""
    wait_for_broker(settings, timeout_s=10.0)
    return CheckedProducer(settings, timeout_s)


def make_consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


def make_admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def wait_for_broker(settings: Settings, timeout_s: float = 20.0) -> None:
    """Wait until a metadata request answers (listing every embedded node, when embedded)."""
    from instore.embedded.kafka import BrokerSetupError, metadata_ready  # noqa: PLC0415

    cfg = client_config(settings)
    want = settings.kafka_brokers if settings.embedded_kafka else 1
    try:
        metadata_ready(cfg.pop("bootstrap.servers"), brokers=want, timeout_s=timeout_s, **cfg)
    except BrokerSetupError as exc:
        msg = (f"no Kafka broker answers at {settings.bootstrap_servers} ({exc}); "
               "run `instore up` or set KAFKA_BOOTSTRAP_SERVERS")
        raise KafkaUnavailable(msg) from None


def topic_config(topic: t.Topic, settings: Settings) -> dict[str, str]:
    """The contract's config of ``topic`` with this deployment's retention and compaction bounds
    (and ``min.insync.replicas`` = replicas - 1 on three or more replicas)."""
    cfg = topic.config(retention_ms=settings.stream_retention_ms, compaction_ms=settings.compaction_ms)
    if settings.kafka_replication_factor >= 3:
        cfg["min.insync.replicas"] = str(settings.kafka_replication_factor - 1)
    return cfg


def ensure_topics(settings: Settings, wanted: Iterable[t.Topic] = t.ALL) -> list[str]:
    """Create the contract's topics that are missing; returns the names created."""
    admin = make_admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            topic.name,
            num_partitions=t.partitions_of(topic, settings.kafka_partitions),
            replication_factor=settings.kafka_replication_factor,
            config=topic_config(topic, settings),
        )
        for topic in wanted
        if topic.name not in existing
    ]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=10).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    # Metadata can take a moment to show new topics on every broker.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        have = set(admin.list_topics(timeout=5).topics)
        if all(n.topic in have for n in new):
            break
        time.sleep(0.1)
    return created


def delivery_logger(counter: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    """A delivery callback that logs failures (topic/partition, never the value) and counts."""

    def _cb(err, msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            log.error("delivery failed topic=%s partition=%s: %s", msg.topic(), msg.partition(), err)
            if counter is not None:
                counter["failed"] = counter.get("failed", 0) + 1
        elif counter is not None:
            counter["delivered"] = counter.get("delivered", 0) + 1

    return _cb


def produce(producer: Producer, topic: t.Topic, record: Any, key: str | None = None,
            timestamp_ms: int | None = None, on_delivery: Any = None) -> None:
    """Produce one record (or a tombstone when ``record`` is None), waiting out a full queue."""
    value = None if record is None else (record if isinstance(record, bytes) else record.to_json())
    if key is None and record is not None and not isinstance(record, bytes):
        key = topic.key_of(record)
    kwargs: dict[str, Any] = {"key": key.encode() if key is not None else None, "value": value}
    if timestamp_ms is not None:
        kwargs["timestamp"] = timestamp_ms
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic.name, **kwargs)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def is_record(msg: Message) -> bool:
    """A consumed record, not an event: the end of a partition is dropped quietly, any other
    consumer error is logged (and dropped: librdkafka retries by itself), except a fatal one
    (the client cannot go on, e.g. a static member fenced by another with its instance id):
    that is raised as :class:`KafkaFatal`, so the service stops (one line, exit 1) and is
    restarted instead of polling a dead client for ever."""
    err = msg.error()
    if err is None:
        return True
    if err.fatal() or err.code() == KafkaError._FATAL:  # noqa: SLF001 - the consumer's event for it
        why = f"the Kafka client cannot go on: {err.str()}"
        raise KafkaFatal(why)
    if err.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - confluent-kafka's public name for the code
        log.warning("consumer error: %s", err)
    return False


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """The same connection settings for aiokafka (used by the Faust worker's readers)."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context  # noqa: PLC0415

        cfg["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_ca_location)
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return cfg
