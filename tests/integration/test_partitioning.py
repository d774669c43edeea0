"""Every producer of ours puts a key on the same partition as Java's murmur2 partitioner (and
aiokafka's, which Faust uses), so per-shopper state lives with that shopper's positions."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2

from instore import topics as t
from instore.kafka import ensure_topics, make_producer
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def test_confluent_producer_partitions_like_murmur2(kafka_bootstrap: str, redis_url: str) -> None:
    settings = make_settings(kafka_bootstrap, redis_url)
    ensure_topics(settings)
    producer = make_producer(settings)
    got: dict[str, int] = {}

    def on_delivery(err, msg) -> None:
        assert err is None
        got[msg.key().decode()] = msg.partition()

    keys = [f"shopper-{i:05d}" for i in range(200)] + ["u1", "ü-ñ", "x" * 100]
    for k in keys:
        producer.produce(t.OFFERS.name, b"{}", k.encode(), on_delivery=on_delivery)
    producer.flush(10)
    n = settings.kafka_partitions
    assert got == {k: (murmur2(k.encode()) & 0x7FFFFFFF) % n for k in keys}
