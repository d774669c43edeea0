"""Runs scenario files (tests/scenarios/*.json) against whatever engine is consuming the
broker: it writes the tables and events, waits until outputs stop changing, and collects the
NEARBY_CUSTOMERS rows, offers and dead letters that belong to the scenario.

Several scenarios share one engine: every uid, store_id, pid and segment is prefixed with the
scenario's name and SKUs are offset, so scenarios cannot see each other's data.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from instore import topics as t
from instore.kafka import make_consumer, make_producer
from instore.settings import Settings

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def load_all() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(SCENARIOS.glob("*.json"))]


@dataclass
class Outputs:
    nearby: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


class Collector:
    """Reads NEARBY_CUSTOMERS, offers and dead_letters from the beginning, keeps every JSON
    object (values that are not, only a test's malformed NEARBY rows, are skipped)."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = make_consumer(settings)
        names = (t.NEARBY_CUSTOMERS.name, t.OFFERS.name, t.DEAD_LETTERS.name)
        md = self.consumer.list_topics(timeout=10)
        self.consumer.assign([TopicPartition(n, p, OFFSET_BEGINNING) for n in names
                              for p in md.topics[n].partitions])
        self.out = Outputs()
        # (topic, record timestamp, the value's ts) of every row and offer read: the contract
        # stamps each record with its event time
        self.stamps: list[tuple[str, int, int | None]] = []

    def poll(self, seconds: float) -> int:
        n = 0
        for msg in self.consumer.consume(10_000, seconds):
            if msg.error() or msg.value() is None:
                continue
            try:
                value = orjson.loads(msg.value())
            except orjson.JSONDecodeError:
                value = None
            if not isinstance(value, dict):
                continue  # a malformed NEARBY row a test wrote (the policy dead-letters it)
            if msg.topic() in (t.NEARBY_CUSTOMERS.name, t.OFFERS.name):
                self.stamps.append((msg.topic(), msg.timestamp()[1], value.get("ts")))
            if msg.topic() == t.NEARBY_CUSTOMERS.name:
                self.out.nearby.append(value)
            elif msg.topic() == t.OFFERS.name:
                self.out.offers.append(value)
            else:
                self.out.dead.append(value)
            n += 1
        return n

    def wait_idle(self, quiet_s: float = 1.5, max_s: float = 60.0) -> None:
        start = last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - start < max_s:
            if self.poll(0.2):
                last = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


class Namespacer:
    """Prefixes ids, offsets SKUs, and moves each scenario's world east by a few kilometres
    (a longitude shift changes no haversine distance), so geofences do not overlap."""

    def __init__(self, scenario: dict[str, Any], index: int) -> None:
        self.prefix = f"{scenario['name']}--"
        self.sku_offset = (index + 1) * 10_000
        self.lon_shift = (index + 1) * 0.05

    def id(self, value: str | None) -> str | None:
        return None if value is None else self.prefix + value

    def sku(self, value: int | None) -> int | None:
        return None if value is None else value + self.sku_offset

    def record(self, topic: str, value: dict[str, Any]) -> dict[str, Any]:
        v = dict(value)
        for f in ("uid", "store_id", "pid", "segment"):
            if f in v and isinstance(v[f], str):
                v[f] = self.prefix + v[f]
        if isinstance(v.get("sku"), int):
            v["sku"] = v["sku"] + self.sku_offset
        for f in ("longitude", "product_longitude"):
            if isinstance(v.get(f), float):
                v[f] = v[f] + self.lon_shift
        return v

    def mine(self, row: dict[str, Any]) -> bool:
        return str(row.get("uid", "")).startswith(self.prefix)


def _key(topic: t.Topic, value: dict[str, Any] | None, key: str | None) -> bytes | None:
    if key is not None:
        return key.encode()
    if value is None:
        return None
    k = topic.key_of(value)
    return k.encode() if k is not None else None


class NearbyFeed:
    """Turns a scenario's positions into the NEARBY_CUSTOMERS rows another engine (ksqlDB)
    would write, with the worker's own matching code run here on the scenario's tables, so
    a policy-only worker (WORKER_AGENTS without "proximity") can be fed the same scenario."""

    def __init__(self, settings: Settings) -> None:
        from instore.proximity import ProximityState

        self.state = ProximityState(settings.geofence_margin_m)

    def apply(self, topic: t.Topic, value: dict[str, Any] | None, key: str | None) -> None:
        """A table record the engine would see (products, promotions; tombstones by key)."""
        from instore.records import Promotion, StoreProduct

        if topic is t.STORES_PRODUCTS and value is not None:
            self.state.upsert_product(StoreProduct.model_validate(value))
        elif topic is t.STORES_PRODUCTS and key is not None:
            store_id, _, sku = key.rpartition(":")
            self.state.delete_product(store_id, int(sku))
        elif topic is t.PRODUCTS_PROMOTIONS and value is not None:
            self.state.upsert_promotion(Promotion.model_validate(value))
        elif topic is t.PRODUCTS_PROMOTIONS and key is not None:
            self.state.delete_promotion(key)

    def rows(self, value: dict[str, Any]) -> list[dict[str, Any]]:
        """The NEARBY rows of one position (none if it is outside every store)."""
        from instore.proximity import UnknownStore
        from instore.records import CustomerLocation

        pos = CustomerLocation.model_validate(value)
        try:
            return self.state.match_rows(pos, pos.ts if pos.ts is not None else 0)
        except UnknownStore:
            return []


def run_scenario(settings: Settings, collector: Collector, scenario: dict[str, Any],
                 index: int, feed: str = "positions") -> tuple[Outputs, set[tuple[str, int, int]]]:
    """``feed="nearby"``: instead of positions, write the NEARBY_CUSTOMERS rows they match
    (``NearbyFeed``) for an engine that only runs the policy; raw (malformed) positions are
    skipped, so such a run has no position dead letters to check."""
    ns = Namespacer(scenario, index)
    producer = make_producer(settings)
    nearby = NearbyFeed(settings) if feed == "nearby" else None
    for topic, items in ((t.STORES_PRODUCTS, scenario.get("products", [])),
                         (t.PRODUCTS_PROMOTIONS, scenario.get("promotions", [])),
                         (t.SHOPPER_CONSENTS, scenario.get("consents", []))):
        for item in items:
            value = ns.record(topic.name, item)
            producer.produce(topic.name, orjson.dumps(value), _key(topic, value, None))
            if nearby is not None:
                nearby.apply(topic, value, None)
    producer.flush(30)
    time.sleep(1.0)  # the engine's table views follow the compacted topics continuously
    delivered: set[tuple[str, int, int]] = set()

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            delivered.add((msg.topic(), msg.partition(), msg.offset()))

    phases = sorted({e.get("phase", 0) for e in scenario["events"]})
    for phase in phases:
        for event in (e for e in scenario["events"] if e.get("phase", 0) == phase):
            topic = t.BY_NAME[event["topic"]]
            key = ns.id(event["key"]) if "key" in event else None
            if "raw" in event:
                if nearby is not None and topic is t.CUSTOMERS_LOCATIONS:
                    continue
                producer.produce(topic.name, event["raw"].encode(), key.encode() if key else None,
                                 on_delivery=on_delivery)
                continue
            value = None if event["value"] is None else ns.record(topic.name, event["value"])
            if nearby is not None and topic is t.CUSTOMERS_LOCATIONS:
                for row in nearby.rows(value) if value is not None else []:
                    producer.produce(t.NEARBY_CUSTOMERS.name, orjson.dumps(row),
                                     _key(t.NEARBY_CUSTOMERS, row, None),
                                     on_delivery=on_delivery, timestamp=row["ts"])
                continue
            if nearby is not None:
                nearby.apply(topic, value, key)
            ts = value.get("ts") if value else None
            kwargs = {"timestamp": ts} if isinstance(ts, int) else {}
            producer.produce(topic.name, None if value is None else orjson.dumps(value),
                             _key(topic, value, key), on_delivery=on_delivery, **kwargs)
        producer.flush(30)
        collector.wait_idle()
    out = Outputs(
        nearby=[r for r in collector.out.nearby if ns.mine(r)],
        offers=[r for r in collector.out.offers if ns.mine(r)],
        dead=[d for d in collector.out.dead
              if (d.get("source_topic"), d.get("partition"), d.get("offset")) in delivered],
    )
    return out, delivered


def expected_nearby(scenario: dict[str, Any], index: int) -> Counter[tuple[str, str, str]]:
    ns = Namespacer(scenario, index)
    want: Counter[tuple[str, str, str]] = Counter()
    for e in scenario["expected_nearby"]:
        want[(ns.id(e["uid"]), ns.id(e["pid"]), ns.id(e["store_id"]))] += e.get("count", 1)
    return want  # type: ignore[return-value]


def got_nearby(out: Outputs) -> Counter[tuple[str, str, str]]:
    return Counter((r["uid"], r["pid"], r["store_id"]) for r in out.nearby)


def check_distances(out: Outputs) -> None:
    from instore.geo import distance_ft

    for r in out.nearby:
        d = distance_ft(r["latitude"], r["longitude"], r["product_latitude"], r["product_longitude"])
        assert abs(d - r["distance_ft"]) < 1e-6, r


def expected_offers(scenario: dict[str, Any], index: int) -> Counter[tuple[str, str]] | None:
    if "expected_offers" not in scenario:
        return None
    ns = Namespacer(scenario, index)
    return Counter((ns.id(o["uid"]), ns.id(o["pid"])) for o in scenario["expected_offers"])  # type: ignore[misc]


def got_offers(out: Outputs) -> Counter[tuple[str, str]]:
    """Offers by (uid, pid), counting distinct offer ids (a redelivery is the same offer)."""
    seen = {(o["offer_id"], o["uid"], o["pid"]) for o in out.offers}
    return Counter((uid, pid) for _, uid, pid in seen)


def check_dead_letters(scenario: dict[str, Any], out: Outputs) -> None:
    expected = scenario.get("expected_dead_letters")
    if expected is None:
        return
    remaining = list(out.dead)
    for e in expected:
        match = next((d for d in remaining if d["source_topic"] == e["source_topic"]
                      and e["error_contains"] in d["error"]), None)
        assert match is not None, f"no dead letter with {e} among {remaining}"
        remaining.remove(match)
    assert not remaining, f"unexpected dead letters: {remaining}"


def wait_for_probe(settings: Settings, timeout_s: float = 120.0) -> bool:
    """Wait until the engine answers: a probe product/promotion in a store of its own, and a
    position on it, until its NEARBY row comes back."""
    from instore.kafka import produce
    from instore.records import Promotion, StoreProduct
    from producers.publish import wait_for_worker

    producer = make_producer(settings)
    product = StoreProduct(sku=999_999, store_id="probe-store", segment="probe", name="probe",
                           latitude=10.0, longitude=10.0, country="XX")
    produce(producer, t.STORES_PRODUCTS, product)
    produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(pid="probe-promo", sku=999_999,
                                                       title="probe", discount_pct=1))
    producer.flush(10)
    return wait_for_worker(settings, product, timeout_s)


def wait_for_policy_probe(settings: Settings, timeout_s: float = 120.0) -> bool:
    """Wait until a policy-only worker (WORKER_AGENTS without "proximity") answers: a JSON
    object on NEARBY_CUSTOMERS that is not a row (no uid), until its dead letter comes back (the agent has
    joined its group and loaded the tables: it waits for them before its first event)."""
    consumer = make_consumer(settings)
    producer = make_producer(settings)
    parts = consumer.list_topics(timeout=10).topics[t.DEAD_LETTERS.name].partitions
    consumer.assign([TopicPartition(t.DEAD_LETTERS.name, p, OFFSET_BEGINNING) for p in parts])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            producer.produce(t.NEARBY_CUSTOMERS.name, b'{"probe": "policy-ready"}', b"probe-policy-ready")
            producer.flush(10)
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end:
                msg = consumer.poll(0.1)
                if msg is not None and not msg.error() and msg.value() is not None \
                        and orjson.loads(msg.value()).get("source_topic") == t.NEARBY_CUSTOMERS.name:
                    return True
        return False
    finally:
        consumer.close()
