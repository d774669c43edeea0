"""One writer of NEARBY_CUSTOMERS on the real embedded stack (the embedded Kafka broker, Redis,
the local ksqlDB-compatible endpoint, a Faust worker, `instore ksql migrate` as a child
process), for each NEARBY_ENGINE: the migrations applied, positions produced, and every
expected row on the topic exactly once, counted by (uid, pid, ts). A second writer (ksqlDB's
query beside the worker's proximity agent) would write each row twice. Then the switch
faust -> ksqldb -> faust: `migrate` starts and terminates ksqlDB's writer query."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from instore import topics as t
from instore.commands.ksql.client import make_client
from instore.commands.ksql.migrations import nearby_writers
from instore.embedded import free_port
from instore.kafka import ensure_topics, make_producer, produce
from instore.records import CustomerLocation, Promotion, StoreProduct, now_ms
from instore.settings import Settings
from producers.publish import wait_for_worker
from stream_apps.ksqldb.engine import Engine
from tests.conftest import child_env, instore_proc, make_settings, stop_process
from tests.integration.scenario_runner import wait_for_policy_probe
from tests.integration.test_ksql_endpoint import Endpoint
from tests.integration.test_ksql_scenarios import read_all

pytestmark = pytest.mark.integration

LAT, LON = 51.5, -0.25
FAR_LAT = 51.503  # ~1,100 ft north of the product: near nothing


class Stack:
    """The module's broker, ksqlDB endpoint and a place for logs."""

    def __init__(self, settings: Settings, endpoint: Endpoint, tmp: Path) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.tmp = tmp
        self.runs = 0

    def migrate(self, engine: str) -> str:
        """`instore ksql migrate` with NEARBY_ENGINE=engine; its output."""
        self.runs += 1
        log = self.tmp / f"migrate-{self.runs}-{engine}.log"
        env = child_env(self.settings, KSQLDB_URL=self.endpoint.url, NEARBY_ENGINE=engine)
        proc = instore_proc(["ksql", "migrate"], env, log)
        assert proc.wait(180) == 0, log.read_text()
        return log.read_text()

    def writers(self) -> list[dict[str, Any]]:
        """SHOW QUERIES over the REST API: the queries whose sink is NEARBY_CUSTOMERS."""
        return nearby_writers(make_client(self.settings, self.endpoint.url))


@pytest.fixture(scope="module")
def stack(broker_factory: Callable[[], Any], redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    ensure_topics(settings)
    endpoint = Endpoint(settings)
    try:
        yield Stack(settings, endpoint, tmp_path_factory.mktemp("nearby-engine"))
    finally:
        endpoint.stop()
        broker.stop()


def start_worker(stack: Stack, engine: str) -> tuple[Any, Path]:
    """A Faust worker with NEARBY_ENGINE=engine and every agent named in WORKER_AGENTS."""
    log = stack.tmp / f"worker-{engine}.log"
    env = child_env(stack.settings, NEARBY_ENGINE=engine,
                    WORKER_AGENTS="proximity,policy,analytics", INSTORE_APP_ID=f"instore-ne-{engine}",
                    INSTORE_DATA_DIR=str(stack.tmp / f"data-{engine}"), WORKER_WEB_PORT=str(free_port()))
    return instore_proc(["worker", "--loglevel", "info"], env, log), log


def publish_product(settings: Settings, ns: str, sku: int) -> StoreProduct:
    """One product of a store of the namespace, near two promotions (its SKU's, its
    segment's): every position at it is two rows."""
    product = StoreProduct(sku=sku, store_id=f"{ns}-s1", segment=f"{ns}-coffee", name="Beans",
                           latitude=LAT, longitude=LON, country="GB")
    producer = make_producer(settings)
    produce(producer, t.STORES_PRODUCTS, product)
    produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(
        pid=f"{ns}-sku", sku=sku, title="10% off", discount_pct=10, radius_ft=30))
    produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(
        pid=f"{ns}-seg", segment=f"{ns}-coffee", title="5% off", discount_pct=5, radius_ft=30))
    producer.flush(30)
    return product


def walk(settings: Settings, product: StoreProduct, ns: str) -> set[tuple[str, str, int]]:
    """Two shoppers' positions (two near the product each half second, one far); the rows
    the proximity rule gives for them, as (uid, pid, ts)."""
    producer = make_producer(settings)
    t0 = now_ms()
    expected = set()
    plan = [(f"{ns}-u1", LAT, 0), (f"{ns}-u1", LAT, 500), (f"{ns}-u1", FAR_LAT, 1_000),
            (f"{ns}-u1", LAT, 1_500), (f"{ns}-u2", LAT, 200), (f"{ns}-u2", LAT, 700)]
    for uid, lat, offset in plan:
        ts = t0 + offset
        pos = CustomerLocation(uid=uid, store_id=product.store_id, latitude=lat, longitude=LON,
                               country="GB", ts=ts)
        produce(producer, t.CUSTOMERS_LOCATIONS, pos, timestamp_ms=ts)
        if lat == LAT:
            expected |= {(uid, f"{ns}-sku", ts), (uid, f"{ns}-seg", ts)}
    producer.flush(30)
    return expected


def rows_of(settings: Settings, ns: str) -> Counter[tuple[str, str, int]]:
    return Counter((r["uid"], r["pid"], r["ts"]) for r in read_all(settings, t.NEARBY_CUSTOMERS.name)
                   if str(r.get("uid", "")).startswith(f"{ns}-"))


def settled_rows(stack: Stack, ns: str, expected: set[tuple[str, str, int]],
                 timeout_s: float = 90.0) -> Counter[tuple[str, str, int]]:
    """The namespace's rows once every expected one is there and the topic has stopped
    changing (both engines idle): a second writer's copies have arrived by then."""
    deadline = time.monotonic() + timeout_s
    got: Counter[tuple[str, str, int]] = Counter()
    while time.monotonic() < deadline:
        got = rows_of(stack.settings, ns)
        if expected <= set(got):
            break
        time.sleep(0.5)
    stack.endpoint.engine.wait_idle(60)
    while time.monotonic() < deadline:
        time.sleep(2.0)
        again = rows_of(stack.settings, ns)
        if again == got:
            break
        got = again
    return got


@pytest.mark.parametrize("engine", ["faust", "ksqldb"])
def test_one_engine_writes_each_row_once(stack: Stack, engine: str) -> None:
    out = stack.migrate(engine)
    writers = stack.writers()
    if engine == "faust":
        assert "NEARBY_ENGINE=faust" in out and writers == [], out
    else:
        assert "NEARBY_ENGINE=ksqldb" in out, out
        assert [w["state"] for w in writers] == ["RUNNING"], writers
    ns = f"ne-{engine}"
    product = publish_product(stack.settings, ns, sku=880_001 if engine == "faust" else 880_002)
    worker, log = start_worker(stack, engine)
    try:
        if engine == "ksqldb":  # the worker reads NEARBY_CUSTOMERS: its policy agent answers
            assert wait_for_policy_probe(stack.settings, 120), log.read_text()[-3000:]
            text = log.read_text()
            assert "agents analytics, policy" in text, text[-3000:]
            assert "NEARBY_ENGINE=ksqldb" in text and "proximity agent is off" in text
        # a position on the product comes back as a row: the writer has the catalog
        assert wait_for_worker(stack.settings, product, 120), log.read_text()[-3000:]
        expected = walk(stack.settings, product, ns)
        got = settled_rows(stack, ns, expected)
    finally:
        stop_process(worker, 20)
    assert set(got) == expected, (sorted(got), sorted(expected))
    twice = {k: n for k, n in got.items() if n != 1}
    assert not twice, f"rows written more than once: {twice}"
    assert len(expected) == 2 * 5  # five positions near the product, two promotions each


def test_migrate_switches_the_writer_faust_ksqldb_faust(stack: Stack) -> None:
    """No worker runs here: the rows that appear are ksqlDB's."""
    out = stack.migrate("faust")
    assert stack.writers() == [], out
    assert "NEARBY_ENGINE=faust" in out, out

    out = stack.migrate("ksqldb")
    writers = stack.writers()
    assert len(writers) == 1 and writers[0]["state"] == "RUNNING", writers
    qid = writers[0]["id"]
    assert f"NEARBY_ENGINE=ksqldb: started {qid}" in out, out
    out = stack.migrate("ksqldb")  # already running: nothing started
    assert [w["id"] for w in stack.writers()] == [qid]
    assert f"written by {qid}" in out, out

    ns = "ne-switch"
    product = publish_product(stack.settings, ns, sku=880_003)
    assert wait_for_worker(stack.settings, product, 120), "ksqlDB's writer wrote no row"
    expected = walk(stack.settings, product, ns)
    got = settled_rows(stack, ns, expected)
    assert set(got) == expected and set(got.values()) == {1}, got

    out = stack.migrate("faust")
    assert f"NEARBY_ENGINE=faust: terminated {qid}" in out, out
    assert stack.writers() == []
    before = rows_of(stack.settings, ns)
    after_switch = walk(stack.settings, product, ns)  # nobody writes NEARBY_CUSTOMERS now
    stack.endpoint.engine.wait_idle(60)
    assert rows_of(stack.settings, ns) == before
    assert not after_switch & set(before)
    # a restarted endpoint replays its command topic: the writer stays terminated
    replayed = Engine(stack.settings)
    try:
        assert [q for q in replayed.queries.values()
                if q.sink is not None and q.sink.name == t.NEARBY_CUSTOMERS.name] == []
        assert "NEARBY_CUSTOMERS" in replayed.sources
    finally:
        replayed.close()
