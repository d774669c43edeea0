"""The spine's scenario suite (tests/scenarios/*.json) on the local ksqlDB-compatible endpoint
running ksql/migrations/ and the NEARBY_CUSTOMERS writer (ksql/nearby_writer/, the query
`instore ksql migrate` starts with NEARBY_ENGINE=ksqldb): the same events in, the same
NEARBY_CUSTOMERS rows out as the Faust engine. All scenarios run at once on one engine,
namespaced like the Faust runner does (tests/integration/scenario_runner.py), phase by phase,
waiting for the engine to be idle.

Not checked here: ``expected_offers`` (the Faust policy) and ``expected_dead_letters`` (ksqlDB
counts bad records in its processing log). ``position_without_store`` is an expected failure:
ksqlDB has no geofence lookup, a position without store_id joins nothing (see the comments in
ksql/nearby_writer/nearby_customers.sql)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from instore import topics as t
from instore.kafka import ensure_topics, make_consumer, make_producer
from stream_apps.ksqldb.engine import Engine
from tests.conftest import make_settings
from tests.integration.scenario_runner import Namespacer, expected_nearby, load_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "ksql" / "migrations").glob("V*.sql"))
NEARBY_WRITER = ROOT / "ksql" / "nearby_writer" / "nearby_customers.sql"
SCENARIOS = load_all()
NOT_EXPRESSIBLE = {"position_without_store": "ksqlDB has no geofence lookup for store_id"}


def read_all(settings: Any, topic: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Every non-null value of ``topic`` from the beginning to the current end."""
    consumer = make_consumer(settings)
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        todo = {}
        for p in md.partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                    cached=False)
            if hi > lo:
                todo[p] = hi
        if not todo:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        out = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.2):
                if m.error() is not None:
                    continue
                if m.value() is not None:
                    out.append(orjson.loads(m.value()))
                if m.offset() + 1 >= todo.get(m.partition(), 0):
                    todo.pop(m.partition(), None)
        return out
    finally:
        consumer.close()


def _key(topic: t.Topic, value: dict[str, Any] | None, key: str | None) -> bytes | None:
    if key is not None:
        return key.encode()
    if value is None:
        return None
    try:
        k = topic.key_of(value)
    except KeyError:
        return None
    return None if k is None else k.encode()


def run_all(engine: Engine, settings: Any, scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    producer = make_producer(settings)
    spaces = [Namespacer(s, i) for i, s in enumerate(scenarios)]
    for sc, ns in zip(scenarios, spaces, strict=True):
        for topic, items in ((t.STORES_PRODUCTS, sc.get("products", [])),
                             (t.PRODUCTS_PROMOTIONS, sc.get("promotions", [])),
                             (t.SHOPPER_CONSENTS, sc.get("consents", []))):
            for item in items:
                value = ns.record(topic.name, item)
                producer.produce(topic.name, orjson.dumps(value), _key(topic, value, None))
    producer.flush(30)
    assert engine.wait_idle(120), "the engine did not load the catalog"
    phases = sorted({e.get("phase", 0) for sc in scenarios for e in sc["events"]})
    for phase in phases:
        for sc, ns in zip(scenarios, spaces, strict=True):
            for event in (e for e in sc["events"] if e.get("phase", 0) == phase):
                topic = t.BY_NAME[event["topic"]]
                key = ns.id(event["key"]) if "key" in event else None
                if "raw" in event:
                    producer.produce(topic.name, event["raw"].encode(),
                                     key.encode() if key else None)
                    continue
                value = None if event["value"] is None else ns.record(topic.name, event["value"])
                ts = value.get("ts") if value else None
                kwargs = {"timestamp": ts} if isinstance(ts, int) and ts >= 0 else {}
                producer.produce(topic.name, None if value is None else orjson.dumps(value),
                                 _key(topic, value, key), **kwargs)
        producer.flush(30)
        assert engine.wait_idle(120), f"the engine did not finish phase {phase}"
    broken = {q.id: q.error for q in engine.queries.values() if q.state != "RUNNING"}
    assert not broken, broken
    PROCESSES.update({q.id: q.worker_count for q in engine.queries.values()})
    SINKS.update({q.id: q.sink.name for q in engine.queries.values() if q.sink is not None})
    return read_all(settings, t.NEARBY_CUSTOMERS.name)


PROCESSES: dict[str, int] = {}  # query id -> processes it ran on (workers.py)
SINKS: dict[str, str] = {}  # query id -> the stream or table it writes


@pytest.fixture(scope="module")
def nearby_rows(broker_factory: Callable[[], Any],
                redis_url: str) -> Iterator[list[dict[str, Any]]]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    ensure_topics(settings)
    engine = Engine(settings)
    try:
        for path in [*MIGRATIONS, NEARBY_WRITER]:
            engine.execute(path.read_text(), {})
        yield run_all(engine, settings, SCENARIOS)
    finally:
        engine.close()
        broker.stop()


def _params() -> list[Any]:
    out = []
    for i, sc in enumerate(SCENARIOS):
        marks = [pytest.mark.xfail(reason=NOT_EXPRESSIBLE[sc["name"]], strict=True)] \
            if sc["name"] in NOT_EXPRESSIBLE else []
        out.append(pytest.param(i, id=sc["name"], marks=marks))
    return out


@pytest.mark.skipif(not SCENARIOS, reason="no scenario files in tests/scenarios/ yet")
@pytest.mark.parametrize("index", _params())
def test_scenario(index: int, nearby_rows: list[dict[str, Any]]) -> None:
    from instore.geo import distance_ft

    scenario = SCENARIOS[index]
    ns = Namespacer(scenario, index)
    mine = [r for r in nearby_rows if ns.mine(r)]
    got = Counter((r["uid"], r["pid"], r["store_id"]) for r in mine)
    assert got == expected_nearby(scenario, index)
    for r in mine:  # the rule's distance: haversine * 3280.8399
        d = distance_ft(r["latitude"], r["longitude"], r["product_latitude"],
                        r["product_longitude"])
        assert abs(d - r["distance_ft"]) < 1e-6, r
    for e in scenario["expected_nearby"]:
        if "distance_ft" in e:
            rows = [r for r in mine if (r["uid"], r["pid"]) == (ns.id(e["uid"]), ns.id(e["pid"]))]
            assert any(abs(r["distance_ft"] - e["distance_ft"]) < 1e-6 for r in rows), (e, rows)


def test_nearby_ran_on_worker_processes(nearby_rows: list[dict[str, Any]]) -> None:
    """NEARBY_CUSTOMERS (a stream-table join) is split over ksql.streams.num.stream.threads
    processes (2 by default on a machine with 2 cores or more); aggregations stay in one."""
    import os

    nearby = [n for q, n in PROCESSES.items() if SINKS.get(q) == t.NEARBY_CUSTOMERS.name]
    assert nearby
    assert nearby == [min(2, os.cpu_count() or 1)] * len(nearby)
    assert all(n == 1 for q, n in PROCESSES.items() if q.startswith("CTAS"))
