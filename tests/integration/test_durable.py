"""Durable embedded mode: the persister keeps catalog, promotions and consents (and their
tombstones) in SQLite under the data dir; when the supervised broker is SIGKILLed and comes back
empty, they are written back into the compacted topics; `instore status` sees the restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from instore.durable import DurableStore, broker_is_empty

from instore import topics as t
from instore.health import services_check, write_stack_status
from instore.kafka import make_consumer, make_producer, produce
from instore.records import Promotion, ShopperConsent, StoreProduct
from instore.settings import Settings
from instore.stack import isolated_settings, start_stack

pytestmark = pytest.mark.integration


def _table(settings: Settings, topic: t.Topic) -> dict[str, dict | None]:
    """Latest value per key of a compacted topic, read from the beginning."""
    consumer = make_consumer(settings)
    md = consumer.list_topics(timeout=10)
    if topic.name not in md.topics:
        consumer.close()
        return {}
    consumer.assign([TopicPartition(topic.name, p, OFFSET_BEGINNING)
                     for p in md.topics[topic.name].partitions])
    out: dict[str, dict | None] = {}
    idle = time.monotonic()
    while time.monotonic() - idle < 1.5:
        for m in consumer.consume(1000, 0.2):
            if m.error() is None:
                out[m.key().decode()] = orjson.loads(m.value()) if m.value() else None
                idle = time.monotonic()
    consumer.close()
    return {k: v for k, v in out.items() if v is not None}


def _wait(check, timeout: float = 60.0, step: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()


def test_broker_restart_restores_catalog_promotions_and_consents(tmp_path: Path) -> None:
    settings = isolated_settings(Settings(_env_file=None), kafka_partitions=2)  # type: ignore[call-arg]
    stack = start_stack(settings, tmp_path, only={"broker", "redis", "persist"})
    try:
        producer = make_producer(settings)
        product = StoreProduct(sku=7, store_id="s1", segment="coffee", name="Beans",
                               latitude=51.5, longitude=-0.12)
        produce(producer, t.STORES_PRODUCTS, product)
        produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(pid="p1", sku=7, title="10% off",
                                                           discount_pct=10))
        produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(pid="p2", sku=7, title="gone",
                                                           discount_pct=5))
        produce(producer, t.PRODUCTS_PROMOTIONS, None, key="p2")  # withdrawn
        for uid in ("keep", "erased"):
            produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=uid, opted_in=True,
                                                                 updated_at=1))
        produce(producer, t.SHOPPER_CONSENTS, None, key="erased")  # erasure tombstone
        producer.flush(10)

        def persisted() -> dict[str, int] | None:
            store = DurableStore(tmp_path)
            try:
                counts = store.counts()
            finally:
                store.close()
            want = {t.STORES_PRODUCTS.name: 1, t.PRODUCTS_PROMOTIONS.name: 1,
                    t.SHOPPER_CONSENTS.name: 1}
            return counts if counts == want else None

        assert _wait(persisted), "the persister did not store the compacted topics"

        broker = stack.services["broker"]
        os.killpg(broker.proc.pid, signal.SIGKILL)
        broker.proc.wait(10)

        def restarted() -> bool:
            stack.supervise_once()
            return stack.services["broker"].restarts == 1 and \
                stack.services["broker"].proc.poll() is None

        assert _wait(restarted, 30, 0.2)
        write_stack_status(tmp_path, stack.status())
        check = services_check(tmp_path)
        assert "1 restarts" in check["detail"], check

        restored = _wait(lambda: not broker_is_empty(settings)
                         and len(_table(settings, t.SHOPPER_CONSENTS)) == 1, 60)
        assert restored, (tmp_path / "logs" / "persist.log").read_text()[-2000:]
        assert set(_table(settings, t.SHOPPER_CONSENTS)) == {"keep"}  # the erasure stuck
        assert set(_table(settings, t.PRODUCTS_PROMOTIONS)) == {"p1"}  # the withdrawal stuck
        assert _table(settings, t.STORES_PRODUCTS)["s1:7"]["name"] == "Beans"
        # Redis runs append-only in the same data dir.
        assert any((tmp_path / "redis").glob("appendonly*"))
    finally:
        stack.stop()
