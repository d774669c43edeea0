"""A worker restart resumes from committed offsets and restores the policy state from its
changelog: a shopper who already got an offer does not get it again."""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from instore import topics as t
from instore.kafka import ensure_topics, make_consumer, make_producer, produce
from instore.records import CustomerLocation, Promotion, ShopperConsent, StoreProduct
from tests.conftest import child_env, instore_proc, make_settings, stop_process
from tests.integration.scenario_runner import wait_for_probe

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000


def _offers(settings) -> list[dict]:
    c = make_consumer(settings)
    parts = c.list_topics(timeout=10).topics[t.OFFERS.name].partitions
    c.assign([TopicPartition(t.OFFERS.name, p, OFFSET_BEGINNING) for p in parts])
    out = []
    idle = time.monotonic()
    while time.monotonic() - idle < 1.5:
        for m in c.consume(1000, 0.2):
            if not m.error():
                out.append(orjson.loads(m.value()))
                idle = time.monotonic()
    c.close()
    return out


def _partition(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _walk(producer, uid: str, product: StoreProduct, start: int, seconds: float) -> None:
    for i in range(int(seconds * 2)):
        produce(producer, t.CUSTOMERS_LOCATIONS, CustomerLocation(
            uid=uid, store_id=product.store_id, latitude=product.latitude,
            longitude=product.longitude, ts=start + i * 500))
    producer.flush(10)


def _wait_for(settings, predicate, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    offers: list[dict] = []
    while time.monotonic() < deadline:
        offers = _offers(settings)
        if predicate(offers):
            return offers
    return offers


# SIGKILL: the restarted worker removes the killed worker's group member and gets the
# partitions at once (stream_apps/transport.py). In about 1 run in 3 Faust then dropped the
# positions it fetched after the restart (aiokafka's position past them, the agent never saw
# them); the worker's lost-fetch check (stream_apps/watchdog.py) fetches them again.
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_restart_does_not_re_offer(broker_factory, redis_url, tmp_path, how: str) -> None:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url, dwell_s=2)
    ensure_topics(settings)
    # A short session timeout, as the embedded stack gives its workers (Tansu answers a
    # JoinGroup after half of it).
    env = child_env(settings, DWELL_S="2", INSTORE_DATA_DIR=str(tmp_path), WORKER_SESSION_TIMEOUT_S="4")
    log = tmp_path / "worker.log"
    worker = instore_proc(["worker", "--loglevel", "info"], env, log)
    try:
        assert wait_for_probe(settings), log.read_text()[-2000:]
        producer = make_producer(settings)
        product = StoreProduct(sku=1, store_id="s1", segment="coffee", name="Beans",
                               latitude=51.5, longitude=-0.12, country="GB")
        produce(producer, t.STORES_PRODUCTS, product)
        produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(pid="p1", sku=1, title="10% off",
                                                           discount_pct=10))
        produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid="u1", opted_in=True,
                                                             updated_at=T0))
        producer.flush(10)
        time.sleep(1)
        _walk(producer, "u1", product, T0, 4)
        first = _wait_for(settings, lambda o: any(x["uid"] == "u1" for x in o))
        ids = {o["offer_id"] for o in first if o["uid"] == "u1"}
        assert len(ids) == 1

        time.sleep(2.5)  # past a commit interval and a changelog flush
        os.killpg(worker.pid, getattr(signal, how))
        worker.wait(30)
        worker = instore_proc(["worker", "--loglevel", "info"], env, log)
        assert wait_for_probe(settings), log.read_text()[-2000:]
        # Still at the shelf, within the cooldown: no new offer for u1.
        _walk(producer, "u1", product, T0 + 10_000, 4)
        # A control shopper shows the restarted worker does make offers. It is on u1's
        # partition: one that has committed offsets (a never-committed partition can take a
        # while to flow after a restart on the embedded broker; see the issue notes).
        u2 = next(u for u in (f"u2-{i}" for i in range(1000))
                  if _partition(u, settings.kafka_partitions) == _partition("u1", settings.kafka_partitions))
        produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=u2, opted_in=True,
                                                             updated_at=T0))
        producer.flush(10)
        time.sleep(1)
        _walk(producer, u2, product, T0 + 10_000, 4)
        after = _wait_for(settings, lambda o: any(x["uid"] == u2 for x in o))
        assert {o["offer_id"] for o in after if o["uid"] == "u1"} == ids
        assert len({o["offer_id"] for o in after if o["uid"] == u2}) == 1
        if how == "SIGTERM":  # a clean stop commits: nothing is processed twice
            assert sum(1 for o in after if o["uid"] == "u1") == 1
    finally:
        stop_process(worker, 20)
