"""A burst of fuzzed records through a real Faust worker: every input ends as NEARBY rows or
nothing (a valid position outside every store) or a dead letter that names its offset, and the
partition is not stuck: a valid position after the burst still comes out, and the worker's
committed offsets catch up with the end of the topic."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest

from bench.fuzz import Generator
from instore import topics as t
from instore.embedded import free_port
from instore.geo import GeoError
from instore.health import consumer_lag
from instore.kafka import ensure_topics, make_producer, produce
from instore.proximity import ProximityState, UnknownStore
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Promotion,
    RecordError,
    StoreProduct,
    decode,
)
from tests.conftest import child_env, instore_proc, make_settings
from tests.integration.scenario_runner import Collector, wait_for_probe

pytestmark = pytest.mark.integration

PRODUCT = StoreProduct(sku=1, store_id="s1", segment="coffee", name="Beans", latitude=51.5,
                       longitude=-0.12, country="GB")
PROBE = StoreProduct(sku=999_999, store_id="probe-store", segment="probe", name="probe",
                     latitude=10.0, longitude=10.0, country="XX")
PROMO = Promotion(pid="p1", sku=1, title="10% off", discount_pct=10)
POSITIONS, NEARBY = 400, 150


class TolerantCollector(Collector):
    """NEARBY_CUSTOMERS also holds this test's fuzzed values: skip those that are not JSON."""

    def poll(self, seconds: float) -> int:
        n = 0
        for msg in self.consumer.consume(10_000, seconds):
            if msg.error() or msg.value() is None:
                continue
            try:
                value = orjson.loads(msg.value())
            except orjson.JSONDecodeError:
                continue
            if not isinstance(value, dict):
                continue
            if msg.topic() == t.NEARBY_CUSTOMERS.name:
                self.out.nearby.append(value)
            elif msg.topic() == t.OFFERS.name:
                self.out.offers.append(value)
            else:
                self.out.dead.append(value)
            n += 1
        return n


def _as_bytes(raw: bytes | str | None) -> bytes | None:
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="surrogatepass")
    return raw


def _expect_dead(state: ProximityState, raw: bytes | None) -> bool:
    """What the proximity agent must do with this value: dead-letter it or not."""
    try:
        pos = decode(CustomerLocation, raw)
        state.match_rows(pos, pos.ts or 0)
    except RecordError:
        return True
    except UnknownStore:
        return pos.store_id is not None
    except GeoError:
        return True
    return False


def test_fuzzed_burst_ends_as_rows_or_dead_letters(broker_factory, redis_url, tmp_path) -> None:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url, kafka_partitions=1, dwell_s=0)
    ensure_topics(settings)
    env = child_env(settings, KAFKA_PARTITIONS="1", DWELL_S="0", INSTORE_DATA_DIR=str(tmp_path),
                    WORKER_WEB_PORT=str(free_port()))
    log = tmp_path / "worker.log"
    worker = instore_proc(["worker", "--loglevel", "info"], env, log)
    # The worker computing positions applies the policy to its own rows; NEARBY_CUSTOMERS
    # written by someone else (ksqlDB, or this fuzzer) is read by a policy-only worker.
    policy_env = child_env(settings, KAFKA_PARTITIONS="1", DWELL_S="0",
                           INSTORE_DATA_DIR=str(tmp_path / "policy"), WORKER_WEB_PORT=str(free_port()),
                           WORKER_AGENTS="policy", INSTORE_APP_ID="instore-policy")
    policy_log = tmp_path / "policy-worker.log"
    policy_worker = instore_proc(["worker", "--loglevel", "info"], policy_env, policy_log)
    collector = None
    try:
        assert wait_for_probe(settings), log.read_text()[-2000:]
        producer = make_producer(settings)
        produce(producer, t.STORES_PRODUCTS, PRODUCT)
        produce(producer, t.PRODUCTS_PROMOTIONS, PROMO)
        producer.flush(10)
        time.sleep(1.0)  # the worker's views follow the compacted topics

        state = ProximityState()
        for p in (PRODUCT, PROBE):
            state.upsert_product(p)
        state.upsert_promotion(PROMO)

        offsets: dict[str, dict[int, bytes | None]] = {t.CUSTOMERS_LOCATIONS.name: {},
                                                       t.NEARBY_CUSTOMERS.name: {}}

        def record_offset(err, msg) -> None:  # type: ignore[no-untyped-def]
            assert err is None, err
            offsets[msg.topic()][msg.offset()] = msg.value()

        for topic, model, n in ((t.CUSTOMERS_LOCATIONS, CustomerLocation, POSITIONS),
                                (t.NEARBY_CUSTOMERS, NearbyCustomer, NEARBY)):
            gen = Generator(model, seed=42)
            sent = 0
            while sent < n:
                raw = _as_bytes(gen())
                if raw is not None and len(raw) > 200_000:
                    continue  # keep the burst small; huge values are covered by the unit fuzzers
                produce(producer, topic, raw, key="fuzz", on_delivery=record_offset)
                sent += 1
        producer.flush(30)
        assert len(offsets[t.CUSTOMERS_LOCATIONS.name]) == POSITIONS
        assert len(offsets[t.NEARBY_CUSTOMERS.name]) >= NEARBY

        # A valid position after the burst still comes out (the partition is not stuck).
        produce(producer, t.CUSTOMERS_LOCATIONS, CustomerLocation(
            uid="after-burst", store_id="s1", latitude=PRODUCT.latitude,
            longitude=PRODUCT.longitude, ts=1_767_225_600_000))
        producer.flush(10)

        collector = TolerantCollector(settings)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            collector.poll(0.5)
            if any(r.get("uid") == "after-burst" for r in collector.out.nearby):
                break
        assert any(r.get("uid") == "after-burst" for r in collector.out.nearby), \
            log.read_text()[-3000:]
        collector.wait_idle(quiet_s=2.0, max_s=30)
        near_topic = t.NEARBY_CUSTOMERS.name
        bad_near = set()
        for off, raw in offsets[near_topic].items():
            try:
                decode(NearbyCustomer, raw)
            except RecordError:
                bad_near.add((near_topic, off))
        deadline = time.monotonic() + 60  # the policy-only worker may still be joining
        while time.monotonic() < deadline and not bad_near <= {
                (d["source_topic"], d["offset"]) for d in collector.out.dead}:
            collector.poll(0.5)

        dead = {(d["source_topic"], d["offset"]) for d in collector.out.dead}
        pos_topic = t.CUSTOMERS_LOCATIONS.name
        expected = {(pos_topic, off) for off, raw in offsets[pos_topic].items()
                    if _expect_dead(state, raw)}
        got = {(s, o) for s, o in dead if s == pos_topic and o in offsets[pos_topic]}
        assert got == expected
        assert expected, "the burst should hold inputs that must be dead-lettered"
        # Every fuzzed NEARBY value the policy cannot decode is a dead letter; none crashed it.
        assert bad_near <= dead, policy_log.read_text()[-3000:]
        assert worker.poll() is None, "the worker crashed on the burst"
        assert policy_worker.poll() is None, "the policy worker crashed on the burst"

        # The worker commits past the burst: lag goes back to zero.
        lag: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lag = consumer_lag(settings, settings.app_id, [pos_topic])
            if lag.get(pos_topic) == 0:
                break
            time.sleep(0.5)
        assert lag.get(pos_topic) == 0, lag
    finally:
        if collector is not None:
            collector.close()
        for proc in (policy_worker, worker):
            proc.terminate()
        for proc in (policy_worker, worker):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
