"""The spine's scenario suite (tests/scenarios/*.json) on the local ksqlDB-compatible endpoint
running ksql/migrations/: the same events in, the same NEARBY_CUSTOMERS rows out as the Faust
engine. ``expected_offers`` (Faust's policy) and ``expected_dead_letters`` (ksqlDB sends bad
input to its processing log instead) are not checked here."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from instore import topics as t
from instore.geo import distance_ft
from instore.kafka import ensure_topics, make_consumer, make_producer
from stream_apps.ksqldb.engine import Engine
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "tests" / "scenarios").glob("*.json"))
MIGRATIONS = sorted((ROOT / "ksql" / "migrations").glob("V*.sql"))


def _key(topic: t.Topic, event: dict[str, Any]) -> bytes | None:
    if "key" in event:
        return None if event["key"] is None else str(event["key"]).encode()
    value = event.get("value")
    if isinstance(value, dict):
        try:
            k = topic.key_of(value)
        except KeyError:
            return None
        return None if k is None else k.encode()
    return None


def _produce(producer: Any, topic_name: str, event: dict[str, Any]) -> None:
    topic = t.BY_NAME[topic_name]
    if "raw" in event:
        value: bytes | None = event["raw"].encode()
    else:
        value = None if event.get("value") is None else orjson.dumps(event["value"])
    kwargs: dict[str, Any] = {"key": _key(topic, event), "value": value}
    ts = event.get("value", {}).get("ts") if isinstance(event.get("value"), dict) else None
    if isinstance(ts, int) and ts >= 0:
        kwargs["timestamp"] = ts
    producer.produce(topic.name, **kwargs)


def read_all(settings: Any, topic: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    consumer = make_consumer(settings)
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = []
        for p in md.partitions:
            lo, hi = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
            if hi > lo:
                parts.append((p, hi))
        if not parts:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p, _ in parts])
        todo = dict(parts)
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


@pytest.fixture
def ksql_engine(broker_factory: Callable[[], Any], redis_url: str) -> Iterator[tuple[Engine, Any]]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    ensure_topics(settings)
    engine = Engine(settings)
    for path in MIGRATIONS:
        engine.execute(path.read_text(), {})
    try:
        yield engine, settings
    finally:
        engine.close()
        broker.stop()


def run_scenario(engine: Engine, settings: Any, scenario: dict[str, Any]) -> list[dict[str, Any]]:
    producer = make_producer(settings)
    for rec in scenario.get("products", []):
        _produce(producer, t.STORES_PRODUCTS.name, {"value": rec})
    for rec in scenario.get("promotions", []):
        _produce(producer, t.PRODUCTS_PROMOTIONS.name, {"value": rec})
    for rec in scenario.get("consents", []):
        _produce(producer, t.SHOPPER_CONSENTS.name, {"value": rec})
    producer.flush(10)
    assert engine.wait_idle(60), "the engine did not load the catalog"
    phases = sorted({e.get("phase", 0) for e in scenario.get("events", [])})
    for phase in phases:
        for event in scenario["events"]:
            if event.get("phase", 0) == phase:
                _produce(producer, event["topic"], event)
        producer.flush(10)
        assert engine.wait_idle(60), f"the engine did not finish phase {phase}"
    broken = {q.id: q.error for q in engine.queries.values() if q.state != "RUNNING"}
    assert not broken, broken
    return read_all(settings, t.NEARBY_CUSTOMERS.name)


def check_nearby(scenario: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    got = Counter((r["uid"], r["pid"], r["store_id"]) for r in rows)
    want = Counter((r["uid"], r["pid"], r["store_id"]) for r in scenario["expected_nearby"])
    assert got == want, (
        f"{scenario['name']}: got {sorted(got.elements())}, want {sorted(want.elements())}"
    )
    for exp in scenario["expected_nearby"]:
        if "distance_ft" not in exp:
            continue
        matches = [
            r
            for r in rows
            if (r["uid"], r["pid"], r["store_id"]) == (exp["uid"], exp["pid"], exp["store_id"])
        ]
        assert any(
            abs(r["distance_ft"] - exp["distance_ft"]) <= 1e-6
            or abs(
                r["distance_ft"]
                - distance_ft(
                    r["latitude"], r["longitude"], r["product_latitude"], r["product_longitude"]
                )
            )
            <= 1e-6
            and abs(exp["distance_ft"] - r["distance_ft"]) <= 0.01
            for r in matches
        ), (exp, matches)
    for r in rows:  # every row's distance is the rule's haversine
        want_ft = distance_ft(
            r["latitude"], r["longitude"], r["product_latitude"], r["product_longitude"]
        )
        assert abs(r["distance_ft"] - want_ft) <= 1e-6


@pytest.mark.skipif(not SCENARIOS, reason="no scenario files in tests/scenarios/ yet")
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, ksql_engine: tuple[Engine, Any]) -> None:
    scenario = json.loads(path.read_text())
    if "expected_nearby" not in scenario:
        pytest.skip("scenario has no expected_nearby")
    engine, settings = ksql_engine
    rows = run_scenario(engine, settings, scenario)
    check_nearby(scenario, rows)
