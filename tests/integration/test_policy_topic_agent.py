"""The topic-reading policy agent (WORKER_AGENTS=policy,analytics: NEARBY_CUSTOMERS rows
computed by another engine such as ksqlDB -> offers) against a real worker on the real
embedded broker and Redis. It must give the offers the inline path (the proximity agent
applying the policy in the same pass) gives: the same ids and fields, consent, dwell,
cooldown, hourly cap and tombstones respected; a malformed row is dead-lettered with its
reason while valid rows keep flowing; offers land in the Redis serving store."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from instore import serving
from instore import topics as t
from instore.embedded import free_port
from instore.kafka import ensure_topics, make_producer
from instore.proximity import UnknownStore
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Promotion,
    ShopperConsent,
    StoreProduct,
)
from instore.settings import Settings
from stream_apps.policy import PolicyConfig, ShopperState, decide_position, offer_id_for
from tests.conftest import child_env, instore_proc, make_settings, stop_process
from tests.integration.scenario_runner import (
    Collector,
    Namespacer,
    NearbyFeed,
    expected_nearby,
    expected_offers,
    got_nearby,
    got_offers,
    load_all,
    run_scenario,
    wait_for_policy_probe,
)

pytestmark = pytest.mark.integration

# the scenario files that say which offers come out (the others are about NEARBY rows)
SCENARIOS = [s for s in load_all() if "expected_offers" in s]
POLICY = SCENARIOS[0]["policy"]


def _cfg(settings: Settings) -> PolicyConfig:
    return PolicyConfig(settings.dwell_s, settings.dwell_gap_s, settings.cooldown_s,
                        settings.cap_per_hour, settings.offer_ttl_s)


@pytest.fixture(scope="module")
def engine(broker_factory, redis_url: str, tmp_path_factory) -> Iterator[tuple]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url, **POLICY)
    ensure_topics(settings)
    tmp = tmp_path_factory.mktemp("policy-topic")
    log = tmp / "worker.log"
    env = child_env(settings, **{k.upper(): str(v) for k, v in POLICY.items()},
                    WORKER_AGENTS="policy,analytics", INSTORE_DATA_DIR=str(tmp / "data"),
                    WORKER_WEB_PORT=str(free_port()))
    worker = instore_proc(["worker", "--loglevel", "info"], env, log)
    try:
        assert wait_for_policy_probe(settings, 90), log.read_text()[-3000:]
        assert "agents analytics, policy" in log.read_text(), log.read_text()[-3000:]
        collector = Collector(settings)
        yield settings, collector, log
        collector.close()
    finally:
        stop_process(worker, 20)  # a worker leaves its group on SIGTERM


def inline_offers(settings: Settings, scenario: dict[str, Any], index: int) -> dict[str, Any]:
    """The offers the inline path gives for this scenario, by offer_id: the proximity agent's
    own calls (``match_hits`` and ``decide_position`` for an opted-in shopper's position), in
    this process, event by event in the runner's order."""
    ns = Namespacer(scenario, index)
    feed = NearbyFeed(settings)
    for topic, items in ((t.STORES_PRODUCTS, scenario.get("products", [])),
                         (t.PRODUCTS_PROMOTIONS, scenario.get("promotions", []))):
        for item in items:
            feed.apply(topic, ns.record(topic.name, item), None)
    consents = {c.uid: c for c in (ShopperConsent.model_validate(
        ns.record(t.SHOPPER_CONSENTS.name, item)) for item in scenario.get("consents", []))}
    shoppers: defaultdict[str, ShopperState] = defaultdict(ShopperState)
    cfg = _cfg(settings)
    offers: dict[str, Any] = {}
    for phase in sorted({e.get("phase", 0) for e in scenario["events"]}):
        for event in (e for e in scenario["events"] if e.get("phase", 0) == phase):
            if "raw" in event:
                continue
            topic = t.BY_NAME[event["topic"]]
            value = None if event["value"] is None else ns.record(topic.name, event["value"])
            if topic is not t.CUSTOMERS_LOCATIONS:
                feed.apply(topic, value, ns.id(event.get("key")))
                continue
            pos = CustomerLocation.model_validate(value)
            try:
                hits = feed.state.match_hits(pos, pos.ts)
            except UnknownStore:
                continue
            consent = consents.get(pos.uid)
            if hits and consent is not None and consent.opted_in:
                for offer in decide_position(pos.uid, hits, pos.ts, shoppers[pos.uid],
                                             feed.state.promotions, cfg, Counter()):
                    offers[offer.offer_id] = orjson.loads(offer.to_json())
    return offers


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s["name"] for s in SCENARIOS])
def test_scenario_fed_as_nearby_rows(engine, index: int) -> None:
    """consent_gates_offers, cooldown_and_hourly_cap, promotion_tombstone: the scenario's
    positions become NEARBY rows on the topic; the offers must be the scenario's, and equal
    (id and every field) to what the inline path computes from the same positions."""
    settings, collector, log = engine
    scenario = dict(SCENARIOS[index], name=f"{SCENARIOS[index]['name']}-via-nearby")
    out, delivered = run_scenario(settings, collector, scenario, index, feed="nearby")
    assert got_nearby(out) == expected_nearby(scenario, index), "the feed wrote other rows"
    assert got_offers(out) == expected_offers(scenario, index), Path(log).read_text()[-3000:]
    assert {o["offer_id"]: o for o in out.offers} == inline_offers(settings, scenario, index)
    assert out.dead == [], out.dead
    assert delivered, "the scenario wrote no NEARBY rows"


T0 = 1_767_225_600_000
NS = "policy-topic--"
PRODUCT = StoreProduct(sku=770_001, store_id=f"{NS}s1", segment=f"{NS}coffee", name="Beans",
                       latitude=51.5, longitude=-0.25, country="GB")
PROMO = Promotion(pid=f"{NS}p1", sku=PRODUCT.sku, title="10% off", discount_pct=10, radius_ft=30)
OPTED_IN, NO_CONSENT, OPTED_OUT = f"{NS}in", f"{NS}none", f"{NS}out"


def _row(uid: str, ts: int, **change: Any) -> dict[str, Any]:
    row = NearbyCustomer(
        uid=uid, store_id=PRODUCT.store_id, pid=PROMO.pid, sku=PRODUCT.sku,
        segment=PRODUCT.segment, distance_ft=12.5, latitude=51.50003, longitude=-0.25,
        product_latitude=PRODUCT.latitude, product_longitude=PRODUCT.longitude, country="GB",
        ts=ts).model_dump()
    return {k: v for k, v in (row | change).items() if v is not ...}


def test_rows_to_offer_dead_letters_and_serving_state(engine, redis_url: str) -> None:
    """An opted-in shopper dwelling on a promotion gets exactly one offer (the inline path's
    offer_id, then cooldown); no consent or opted out -> none; malformed rows between the
    valid ones -> dead letters with their reason; the offer is in Redis as the inline path
    writes it."""
    settings, collector, log = engine
    cfg = _cfg(settings)
    producer = make_producer(settings)
    for topic, record in ((t.STORES_PRODUCTS, PRODUCT), (t.PRODUCTS_PROMOTIONS, PROMO),
                          (t.SHOPPER_CONSENTS, ShopperConsent(uid=OPTED_IN, opted_in=True,
                                                              updated_at=T0)),
                          (t.SHOPPER_CONSENTS, ShopperConsent(uid=OPTED_OUT, opted_in=False,
                                                              updated_at=T0))):
        producer.produce(topic.name, record.to_json(), topic.key_of(record).encode())
    producer.flush(10)
    time.sleep(1.0)  # the worker's views follow the compacted topics

    r = redis.Redis.from_url(redis_url)
    totals_before = _totals(r)
    delivered: dict[tuple[str, int, int], bytes] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        delivered[(msg.topic(), msg.partition(), msg.offset())] = msg.value()

    malformed = {  # value -> what its dead letter's error must say
        b"{not json": "invalid JSON",
        orjson.dumps(_row(OPTED_IN, T0 + 1500, pid=...)): "pid",
        orjson.dumps(_row(OPTED_IN, T0 + 1700, latitude=91.0)): "latitude",
    }
    valid = 0
    for step in range(5):  # a row a second for 4 s: dwell 2 s reached at T0 + 2000
        ts = T0 + step * 1000
        for uid in (OPTED_IN, NO_CONSENT, OPTED_OUT):
            producer.produce(t.NEARBY_CUSTOMERS.name, orjson.dumps(_row(uid, ts)), uid.encode(),
                             timestamp=ts, on_delivery=on_delivery)
            valid += 1
        if step == 1:  # malformed rows on the opted-in shopper's partition, then more valid
            for raw in malformed:
                producer.produce(t.NEARBY_CUSTOMERS.name, raw, OPTED_IN.encode(),
                                 on_delivery=on_delivery)
    producer.flush(10)

    want_id = offer_id_for(OPTED_IN, PROMO.pid, T0 + 2000, cfg)
    shopper, want, verdicts = ShopperState(), [], Counter[str]()
    for step in range(5):  # the inline path on the same rows (and its counters)
        hit = (PRODUCT.store_id, PROMO.pid, PRODUCT.sku, 12.5, b"")
        want += decide_position(OPTED_IN, [hit], T0 + step * 1000, shopper,
                                {PROMO.pid: PROMO}, cfg, verdicts)
    assert [o.offer_id for o in want] == [want_id]
    verdicts["policy:no_consent"] += 10  # the other two shoppers' rows
    want_totals = verdicts + Counter(nearby=valid, offers=1)

    deadline = time.monotonic() + 30
    mine = lambda: [o for o in collector.out.offers if o["uid"].startswith(NS)]  # noqa: E731
    while time.monotonic() < deadline and not mine():
        collector.poll(0.3)
    collector.wait_idle()
    offers = mine()
    assert [o["offer_id"] for o in offers] == [want_id], Path(log).read_text()[-3000:]
    assert offers[0] == orjson.loads(want[0].to_json())

    bad = {k: v for k, v in delivered.items() if v in malformed}
    dead = {(d["source_topic"], d["partition"], d["offset"]): d for d in collector.out.dead
            if (d["source_topic"], d["partition"], d["offset"]) in delivered}
    assert set(dead) == set(bad), dead
    for key, d in dead.items():
        assert malformed[bad[key]] in d["error"], d

    deadline = time.monotonic() + 15  # the worker writes Redis about once a second
    while time.monotonic() < deadline and r.get(serving.offer(want_id)) is None:
        time.sleep(0.2)
    assert orjson.loads(r.get(serving.offer(want_id)) or b"null") == offers[0]
    assert [orjson.loads(x) for x in r.lrange(serving.offers_of(OPTED_IN), 0, -1)] == offers
    assert r.lrange(serving.offers_of(NO_CONSENT), 0, -1) == []
    assert r.lrange(serving.offers_of(OPTED_OUT), 0, -1) == []
    assert want_id in {orjson.loads(x)["offer_id"] for x in r.lrange(serving.offers_feed(), 0, -1)}
    while time.monotonic() < deadline and int(
            r.hget(serving.promo_stats(PROMO.pid), "nearby") or 0) < valid:
        time.sleep(0.2)
    assert r.hgetall(serving.promo_stats(PROMO.pid)) == {b"nearby": str(valid).encode(),
                                                        b"sent": b"1"}
    assert r.hget(serving.store_stats(PRODUCT.store_id), "sent") == b"1"
    # the global counters as the inline path writes them (rows, offers, policy verdicts)
    delta: Counter[str] = Counter()
    while time.monotonic() < deadline:
        after = _totals(r)
        delta = Counter({k: after[k] - totals_before.get(k, 0) for k in after
                         if k in ("nearby", "offers") or k.startswith("policy:")})
        if delta["nearby"] >= valid and delta["offers"] >= 1:
            break
        time.sleep(0.2)
    assert +delta == want_totals
    # dead letters are counted in the same totals (/totals and the metrics read them)
    while time.monotonic() < deadline:
        dead_total = _totals(r).get("dead_letters", 0) - totals_before.get("dead_letters", 0)
        if dead_total >= len(bad):
            break
        time.sleep(0.2)
    after = _totals(r)
    assert after.get("dead_letters", 0) - totals_before.get("dead_letters", 0) >= len(bad)
    assert sum(v for k, v in after.items() if k.startswith("dead:")) >= len(bad)


def _totals(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(serving.totals()).items()}
