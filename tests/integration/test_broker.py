"""The embedded Apache Kafka broker itself: `instore up`'s broker keeps topics, records and
committed offsets across a stop and a kill -9 (the supervisor restarts it on its data); a
compacted table really drops superseded records and tombstones; streams get their retention."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource

from instore import topics as t
from instore.embedded import kafka
from instore.embedded.services import isolated_settings, start_stack
from instore.health import check, services_check, write_stack_status
from instore.kafka import ensure_topics, make_admin, make_consumer, make_producer, produce
from instore.records import Promotion, ShopperConsent
from instore.settings import Settings
from tests.conftest import make_settings
from tests.integration.api_harness import poll

pytestmark = pytest.mark.integration


def _read(settings: Settings, topic: t.Topic, idle_s: float = 1.5) -> list[tuple[str, bytes | None]]:
    """Every (key, value) of ``topic`` from offset 0, in order per partition."""
    consumer = make_consumer(settings)
    md = consumer.list_topics(topic.name, timeout=10)
    consumer.assign([TopicPartition(topic.name, p, OFFSET_BEGINNING)
                     for p in md.topics[topic.name].partitions])
    out: list[tuple[str, bytes | None]] = []
    idle = time.monotonic()
    while time.monotonic() - idle < idle_s:
        for m in consumer.consume(1000, 0.2):
            if m.error() is None:
                out.append((m.key().decode(), m.value()))
                idle = time.monotonic()
    consumer.close()
    return out


def _committed(settings: Settings, group: str, topic: t.Topic) -> int:
    consumer = make_consumer(settings, group_id=group)
    try:
        tps = consumer.committed([TopicPartition(topic.name, 0)], timeout=10)
        return tps[0].offset
    finally:
        consumer.close()


def test_the_stack_broker_keeps_data_across_stop_start_and_kill(tmp_path: Path) -> None:
    settings = isolated_settings(Settings(_env_file=None), kafka_partitions=1)  # type: ignore[call-arg]
    stack = start_stack(settings, tmp_path, only={"broker"})
    try:
        producer = make_producer(settings)
        produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(pid="p1", sku=7, title="10% off",
                                                           discount_pct=10))
        for i in range(5):
            produce(producer, t.OFFER_EVENTS, f'{{"n": {i}}}'.encode(), key=f"o{i}")
        assert producer.flush(20) == 0
        consumer = make_consumer(settings, group_id="keeps-offsets")
        consumer.assign([TopicPartition(t.OFFER_EVENTS.name, 0, 3)])
        consumer.commit(offsets=[TopicPartition(t.OFFER_EVENTS.name, 0, 3)], asynchronous=False)
        consumer.close()

        report = check(settings, tmp_path)["checks"]["broker"]
        assert report["version"] == f"Apache Kafka {kafka.KAFKA_VERSION} (embedded)"
        assert report["brokers"] == 1 and report["disk_bytes"] > 0
        assert report["data_dir"] == str(tmp_path / "kafka")
    finally:
        stack.stop()

    stack = start_stack(settings, tmp_path, only={"broker"})  # the same data dir, again
    try:
        assert len(_read(settings, t.OFFER_EVENTS)) == 5
        assert _read(settings, t.PRODUCTS_PROMOTIONS)[0][0] == "p1"
        assert _committed(settings, "keeps-offsets", t.OFFER_EVENTS) == 3

        broker = stack.services["broker"]
        os.killpg(broker.proc.pid, signal.SIGKILL)  # kill -9: no clean shutdown
        broker.proc.wait(10)

        def restarted() -> bool:
            stack.supervise_once()
            return stack.services["broker"].restarts == 1 and \
                stack.services["broker"].proc.poll() is None

        poll(restarted, 30, 0.2)
        write_stack_status(tmp_path, stack.status())
        assert "1 restarts" in services_check(tmp_path)["detail"]
        def back() -> bool:
            try:
                return len(_read(settings, t.OFFER_EVENTS)) == 5
            except KafkaException:
                return False  # not registered again yet

        poll(back, 90, 1)
        assert _committed(settings, "keeps-offsets", t.OFFER_EVENTS) == 3
    finally:
        stack.stop()


def test_a_broker_maps_the_class_archive_setup_recorded(broker_factory) -> None:
    """`make setup` (`instore broker install`) recorded the JVM class-data archive; a started
    node has it mapped (so its classes come from the archive, not the jars)."""
    handle = broker_factory()
    node = handle.kafka.nodes[0]
    archive = kafka.class_archive(handle.kafka.libs_dir, handle.kafka.java)
    assert archive.exists(), "run `instore broker install` (make setup) to record it"
    pid = handle.kafka.procs[node.node_id].pid
    assert str(archive) in Path(f"/proc/{pid}/maps").read_text()


def test_a_compacted_table_drops_superseded_records_and_tombstones(broker_factory) -> None:
    broker = broker_factory()
    # The contract's config with the bounds shortened (KAFKA.md: compaction a test can see).
    settings = make_settings(broker.bootstrap, "redis://127.0.0.1:1/0", kafka_partitions=1,
                             compaction_ms=200)
    ensure_topics(settings, [t.SHOPPER_CONSENTS])
    producer = make_producer(settings)

    def consent(uid: str, at: int) -> None:
        produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=uid, opted_in=True, updated_at=at))
        producer.flush(10)

    for at in range(3):
        consent("keep", at)
        consent("erased", at)
    produce(producer, t.SHOPPER_CONSENTS, None, key="erased")  # erasure
    producer.flush(10)

    def compacted() -> bool:
        # New writes roll the active segment (segment.ms) so the cleaner can work on the rest;
        # a tombstone needs a second pass after its delete horizon.
        consent("filler", int(time.time()))
        time.sleep(0.5)
        keys = [k for k, _v in _read(settings, t.SHOPPER_CONSENTS, idle_s=0.5)]
        return "erased" not in keys and keys.count("keep") == 1

    poll(compacted, 90, 0.5)
    latest = {k: v for k, v in _read(settings, t.SHOPPER_CONSENTS)}
    assert orjson.loads(latest["keep"])["updated_at"] == 2


def test_topics_get_the_contract_config(broker_factory) -> None:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, "redis://127.0.0.1:1/0",
                             stream_retention_ms=3_600_000)
    ensure_topics(settings)
    admin = make_admin(settings)
    res = [ConfigResource(ConfigResource.Type.TOPIC, name)
           for name in (t.CUSTOMERS_LOCATIONS.name, t.SHOPPER_CONSENTS.name)]
    configs = {r.name: {k: v.value for k, v in f.result().items()}
               for r, f in admin.describe_configs(res).items()}
    stream, table = configs[t.CUSTOMERS_LOCATIONS.name], configs[t.SHOPPER_CONSENTS.name]
    assert stream["cleanup.policy"] == "delete" and stream["retention.ms"] == "3600000"
    assert table["cleanup.policy"] == "compact"
    assert table["max.compaction.lag.ms"] == str(settings.compaction_ms)
