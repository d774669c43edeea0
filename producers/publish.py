"""Write simulated records to the contract's topics, paced in real time or as fast as possible."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from confluent_kafka import Producer

from instore import topics as t
from instore.kafka import produce
from instore.records import CustomerLocation, Promotion, ShopperConsent, StoreProduct, now_ms
from instore.settings import Settings


def publish_world(producer: Producer, products: Iterable[StoreProduct],
                  promotions: Iterable[Promotion],
                  on_sent: Callable[[StoreProduct | Promotion], None] = lambda _r: None,
                  ) -> tuple[int, int]:
    n_products = n_promotions = 0
    for p in products:
        produce(producer, t.STORES_PRODUCTS, p)
        n_products += 1
        on_sent(p)
    for q in promotions:
        produce(producer, t.PRODUCTS_PROMOTIONS, q)
        n_promotions += 1
        on_sent(q)
    producer.flush(60)
    return n_products, n_promotions


def publish_consents(producer: Producer, uids: Iterable[str], opted_in: bool = True) -> int:
    n = 0
    for uid in uids:
        produce(producer, t.SHOPPER_CONSENTS,
                ShopperConsent(uid=uid, opted_in=opted_in, updated_at=now_ms()))
        n += 1
    producer.flush(30)
    return n


def publish_positions(producer: Producer, positions: Iterable[CustomerLocation], *,
                      realtime: bool, stop: Callable[[], bool] = lambda: False,
                      on_sent: Callable[[CustomerLocation], None] = lambda p: None,
                      start_ms: int | None = None) -> int:
    """Produce positions. ``realtime``: sleep until each position's time comes, and stamp it
    with the wall clock (sim time 0 = ``start_ms``); otherwise produce them as fast as possible."""
    t0_wall = time.time()
    base = start_ms if start_ms is not None else now_ms()
    n = 0
    for pos in positions:
        if stop():
            break
        if realtime:
            due = t0_wall + ((pos.ts or 0) - 0) / 1000.0
            delay = due - time.time()
            if delay > 0:
                producer.poll(0)
                time.sleep(delay)
            pos = pos.model_copy(update={"ts": base + (pos.ts or 0)})
        produce(producer, t.CUSTOMERS_LOCATIONS, pos, timestamp_ms=pos.ts)
        on_sent(pos)
        n += 1
    producer.flush(30)
    return n


def wait_for_worker(settings: Settings, product: StoreProduct, timeout_s: float = 120.0) -> bool:
    """Send a probe position onto a promoted product until the worker answers with a NEARBY row
    (it has joined its group and loaded the catalog). The probe uid has no consent: no offer."""
    from confluent_kafka import OFFSET_END, TopicPartition  # noqa: PLC0415

    from instore.kafka import make_consumer, make_producer  # noqa: PLC0415

    consumer = make_consumer(settings)
    producer = make_producer(settings)
    parts = consumer.list_topics(timeout=10).topics[t.NEARBY_CUSTOMERS.name].partitions
    consumer.assign([TopicPartition(t.NEARBY_CUSTOMERS.name, p, OFFSET_END) for p in parts])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            probe = CustomerLocation(uid="probe-worker-ready", store_id=product.store_id,
                                     latitude=product.latitude, longitude=product.longitude,
                                     ts=now_ms())
            produce(producer, t.CUSTOMERS_LOCATIONS, probe)
            producer.flush(10)
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end:
                msg = consumer.poll(0.1)
                if msg is not None and not msg.error() and msg.key() == b"probe-worker-ready":
                    return True
        return False
    finally:
        consumer.close()
