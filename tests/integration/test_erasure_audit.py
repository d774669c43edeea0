"""The erasure audit (privacy finding 3): a shopper's uid is on every topic and in Redis; after
DELETE /shoppers/{uid} nothing in Redis names them at once, and every topic scanned from offset
0 holds no record with the uid within the bounds the answer states (on the embedded Kafka, with
retention and compaction shortened for the test). The hub's channel history and Redis' AOF file
have their own tests (tests/unit/test_push_revocation.py, test_erasure_aof.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from fastapi.testclient import TestClient

from api.main import create_app
from instore import serving
from instore import topics as t
from instore.kafka import ensure_topics, make_consumer, make_producer
from tests.conftest import make_settings
from tests.integration.api_harness import OPS, clear_rate_limits, unique

pytestmark = pytest.mark.integration


def _topics_naming(settings: Any, needle: bytes) -> list[str]:
    """The topics that still hold a record whose key or value contains ``needle``."""
    consumer = make_consumer(settings)
    hits: set[str] = set()
    try:
        for topic in t.ALL:
            md = consumer.list_topics(topic.name, timeout=10).topics[topic.name]
            ends = {}
            for p in md.partitions:
                lo, hi = consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)
                if hi > lo:
                    ends[p] = hi
            if not ends:
                continue
            consumer.assign([TopicPartition(topic.name, p, OFFSET_BEGINNING) for p in ends])
            deadline = time.monotonic() + 10
            while ends and time.monotonic() < deadline:
                for m in consumer.consume(500, timeout=0.2):
                    if m.error() is not None:
                        continue
                    if needle in (m.key() or b"") or needle in (m.value() or b""):
                        hits.add(topic.name)
                    if m.offset() + 1 >= ends.get(m.partition(), 0):
                        ends.pop(m.partition(), None)
    finally:
        consumer.close()
    return sorted(hits)


def _redis_naming(rds: redis.Redis, needle: str) -> list[str]:
    """Redis keys whose name or value contains ``needle``."""
    found = []
    for key in rds.scan_iter(count=1000):
        kind = rds.type(key)
        if kind == "string":
            values: Any = [rds.get(key)]
        elif kind == "list":
            values = rds.lrange(key, 0, -1)
        elif kind == "hash":
            values = [*rds.hkeys(key), *rds.hvals(key)]
        elif kind == "set":
            values = list(rds.smembers(key))
        elif kind == "zset":
            values = rds.zrange(key, 0, -1)
        else:
            values = []
        if needle in key or any(needle in str(v) for v in values):
            found.append(key)
    return found


def _poll(cond: Callable[[], bool], timeout: float, step: float = 2.0) -> float:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, "not within the stated bound"
        time.sleep(step)
    return time.monotonic() - start


def test_erasure_keeps_its_stated_bounds(broker_factory: Any, redis_url: str) -> None:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url, kafka_partitions=1,
                             stream_retention_ms=3000, compaction_ms=200)
    ensure_topics(settings)
    uid = unique("audited")
    store = unique("store")
    producer = make_producer(settings)
    now = int(time.time() * 1000)
    # the uid as the pipeline writes it: a position, a NEARBY row, an offer, its events, a
    # kiosk check-in, a dead letter that quotes it, and the consent
    body = {"uid": uid, "store_id": store, "ts": now}
    for topic in t.ALL:
        key = f"{store}:k1" if topic is t.KIOSK_INTERACTIONS else uid
        if topic in (t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS):
            continue  # the catalog carries no shopper
        value = body | ({"opted_in": True, "channels": ["phone"], "updated_at": now}
                        if topic is t.SHOPPER_CONSENTS else {})
        producer.produce(topic.name, key=key, value=orjson.dumps(value), timestamp=now)
    assert producer.flush(10) == 0
    rds = redis.Redis.from_url(settings.redis_address, decode_responses=True)
    rds.lpush(serving.offers_of(uid), orjson.dumps({"offer_id": f"o-{uid}", "uid": uid}))
    rds.hset(serving.store_positions(store), uid, "1,2")
    assert _topics_naming(settings, uid.encode())  # the audit sees the uid before
    assert _redis_naming(rds, uid)

    clear_rate_limits(settings)
    with TestClient(create_app(settings)) as api:
        assert api.app.state.services.tables.wait_caught_up(30)  # type: ignore[attr-defined]
        res = api.delete(f"/shoppers/{uid}", headers=OPS)
        assert res.status_code == 200, res.text
    report = res.json()
    erased_at = time.monotonic()
    assert "serving store" in report["erased_now"]
    assert _redis_naming(rds, uid) == []  # at once

    filler = make_producer(settings)

    def gone() -> bool:
        # new writes roll the compacted table's segment so the cleaner can take the tombstone
        filler.produce(t.SHOPPER_CONSENTS.name, key="filler",
                       value=orjson.dumps({"uid": "filler", "opted_in": True, "updated_at": 1}))
        filler.flush(10)
        return _topics_naming(settings, uid.encode()) == []

    bound = max(report["compacted_within_s"], report["streams_expire_within_s"])
    _poll(gone, timeout=bound)
    assert time.monotonic() - erased_at <= bound
    rds.close()
