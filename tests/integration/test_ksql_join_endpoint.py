# ruff: noqa: F811  (the endpoint fixture is imported from test_ksql_endpoint)
"""Joins on the local endpoint over the real broker give the records the in-memory engine
gives (the case files' semantics), with both input topics written before the query starts:
the query takes the two streams in timestamp order, as Kafka Streams does, not one topic's
backlog before the other's."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from instore.kafka import make_consumer, make_producer
from stream_apps.ksqldb.testing import MemoryEngine
from tests.integration.test_ksql_endpoint import Endpoint, endpoint  # noqa: F401

pytestmark = pytest.mark.integration


def _records(settings: Any, topic: str, timeout: float = 20.0) -> list[tuple[bytes, bytes, int]]:
    consumer = make_consumer(settings)
    try:
        tp = TopicPartition(topic, 0)
        _lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        if hi <= 0:
            return []
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[tuple[bytes, bytes, int]] = []
        deadline = time.monotonic() + timeout
        while len(out) < hi and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.2):
                if m.error() is None:
                    out.append((m.key(), m.value(), m.timestamp()[1]))
        return out
    finally:
        consumer.close()


def _run_both(
    ep: Endpoint, tag: str, sources: list[str], query: str, inputs: list[tuple[str, Any, Any, int]]
) -> tuple[list[Any], list[Any]]:
    """(endpoint records, in-memory records) of ``query`` over ``inputs`` (source, key, value,
    timestamp), names suffixed with ``tag``. The endpoint gets every record of the second
    source before any of the first."""
    memory = MemoryEngine()
    for sql in sources:
        sql = sql.replace("{T}", tag)
        assert ep.ksql(sql).status_code == 200, sql
        memory.execute(sql)
    producer = make_producer(ep.settings)
    names = [s.split()[2] for s in sources]
    second = [i for i in inputs if i[0] == names[1]]
    first = [i for i in inputs if i[0] != names[1]]
    for name, key, value, ts in second + first:
        src = ep.engine.sources[name.replace("{T}", tag)]
        producer.produce(
            src.topic, key=src.encode_key((key,)), value=orjson.dumps(value), timestamp=ts
        )
    assert producer.flush(10) == 0
    sql = query.replace("{T}", tag)
    memory.execute(sql)
    for name, key, value, ts in sorted(inputs, key=lambda i: i[3]):
        memory.insert(name.replace("{T}", tag), key=key, value=value, timestamp=ts)
    r = ep.ksql(sql, {"ksql.streams.auto.offset.reset": "earliest"})
    assert r.status_code == 200, r.text
    sink = sql.split()[2]
    assert ep.engine.wait_idle(60)
    topic = ep.engine.sources[sink].topic
    got = [(k, orjson.loads(v) if v else None, ts) for k, v, ts in _records(ep.settings, topic)]
    want = [
        (k, orjson.loads(v) if v else None, ts)
        for k, v, ts in ((r["key"], r["value"], r["timestamp"]) for r in memory.topics[topic])
    ]
    return got, want


LEFT_RIGHT = [
    "CREATE STREAM L{T} (ID BIGINT KEY, NAME STRING) WITH (KAFKA_TOPIC='l{T}', "
    "VALUE_FORMAT='JSON', PARTITIONS=1);",
    "CREATE STREAM R{T} (ID BIGINT KEY, F1 STRING) WITH (KAFKA_TOPIC='r{T}', "
    "VALUE_FORMAT='JSON', PARTITIONS=1);",
]
T0 = 1_000_000_000  # (librdkafka stamps a record given timestamp 0 with the current time)
INPUTS = [
    ("L{T}", 0, {"NAME": "zero"}, T0),
    ("R{T}", 0, {"F1": "blah"}, T0 + 10_000),
    ("L{T}", 10, {"NAME": "ten"}, T0 + 11_000),
    ("L{T}", 0, {"NAME": "foo"}, T0 + 13_000),
    ("R{T}", 0, {"F1": "a"}, T0 + 15_000),
    ("R{T}", 100, {"F1": "lonely"}, T0 + 16_000),
    ("L{T}", 0, {"NAME": "bar"}, T0 + 30_000),
]


def test_left_join_without_grace_matches_the_in_memory_engine(endpoint: Endpoint) -> None:
    got, want = _run_both(
        endpoint,
        "A",
        LEFT_RIGHT,
        "CREATE STREAM J{T} AS SELECT L.ID, NAME, F1 FROM L{T} L LEFT JOIN R{T} R "
        "WITHIN 11 SECONDS ON L.ID = R.ID;",
        INPUTS,
    )
    assert len(want) == 6  # zero+null, zero+blah, ten+null, foo+blah, foo+a, bar+null
    assert got == want


def test_full_join_with_grace_matches_the_in_memory_engine(endpoint: Endpoint) -> None:
    got, want = _run_both(
        endpoint,
        "B",
        LEFT_RIGHT,
        "CREATE STREAM J{T} AS SELECT ROWKEY AS ID, NAME, F1 FROM L{T} L FULL OUTER JOIN R{T} R "
        "WITHIN 5 SECONDS GRACE PERIOD 1 SECOND ON L.ID = R.ID;",
        INPUTS,
    )
    assert want  # the matched pairs at least
    assert got == want
