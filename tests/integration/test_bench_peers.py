"""The benchmark's peers (`instore bench proximity --peers`): the proximity step written with
quix-streams and with bytewax, each run as the bench runs it (its own process, its own topics),
writes exactly the rows the rule computes: the same keys, row bytes and timestamps, each once;
bad records are skipped."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench.peers.measure import PEERS, peer_topics, start_peer, stop_peer
from bench.proximity import _positions
from instore import topics as t
from instore.kafka import ensure_topics, make_consumer, make_producer, produce
from instore.proximity import ProximityState, UnknownStore
from instore.records import CustomerLocation, now_ms
from instore.settings import Settings
from producers.world import build_world
from tests.conftest import BrokerHandle

pytestmark = pytest.mark.integration

Row = tuple[bytes, bytes, int]  # key, value, timestamp
COLLECT_TIMEOUT_S = 90.0  # a guard against a stuck peer, not a figure


@dataclass
class Catalog:
    settings: Settings
    state: ProximityState


@pytest.fixture(scope="module")
def catalog(broker_factory: Callable[..., BrokerHandle]) -> Catalog:
    """A broker of its own holding a small world's catalog and promotions."""
    broker = broker_factory()
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap, _env_file=None)  # type: ignore[call-arg]
    ensure_topics(settings, [t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS])
    world = build_world(stores=3, products=300, promoted=40, seed=11)
    producer = make_producer(settings)
    state = ProximityState(settings.geofence_margin_m)
    for p in world.products:
        produce(producer, t.STORES_PRODUCTS, p)
        state.upsert_product(p)
    for q in world.promotions:
        produce(producer, t.PRODUCTS_PROMOTIONS, q)
        state.upsert_promotion(q)
    producer.flush(30)
    return Catalog(settings, state)


def _messages(state: ProximityState) -> tuple[list[tuple[bytes | None, bytes, int]], list[Row]]:
    """~500 walking positions plus bad records, as (key, value, message timestamp), and the
    rows the rule gives for them. Every 10th position has no ts: the message's is used."""
    world = build_world(stores=3, products=300, promoted=40, seed=11)
    base = now_ms()
    messages: list[tuple[bytes | None, bytes, int]] = []
    expected: list[Row] = []
    for i, pos in enumerate(_positions(world, 500, seed=11)):
        ts = base + i
        value = pos.model_dump() | {"ts": None if i % 10 == 0 else ts}
        messages.append((pos.uid.encode(), orjson.dumps(value), ts))
        expected += [(pos.uid.encode(), hit[4], ts) for hit in state.match_hits(pos, ts)]
    outside = CustomerLocation(uid="far-away", latitude=1.0, longitude=1.0, ts=base)
    nowhere = CustomerLocation(uid="lost", store_id="no-such-store", latitude=1.0, longitude=1.0,
                               ts=base)
    for bad in (outside, nowhere):
        with pytest.raises(UnknownStore):
            state.match_hits(bad, base)
        messages.append((bad.uid.encode(), bad.to_json(), base))
    messages.append((b"broken", b"{not json", base))
    return messages, expected


def _collect(settings: Settings, topic: str, want: int, proc_alive: Callable[[], bool]) -> list[Row]:
    """The rows on ``topic`` from the beginning: until ``want`` have come, then 2 s more (a
    duplicate would show), or until the peer stops or the guard expires."""
    consumer = make_consumer(settings)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for p in range(settings.kafka_partitions)])
    rows: list[Row] = []
    guard = time.monotonic() + COLLECT_TIMEOUT_S
    quiet_until: float | None = None
    try:
        while time.monotonic() < guard and proc_alive():
            for m in consumer.consume(10_000, 0.2):
                assert m.error() is None, m.error()
                rows.append((m.key(), m.value(), m.timestamp()[1]))
            if len(rows) >= want:
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return rows


@pytest.mark.parametrize("engine", [p.engine for p in PEERS])
def test_peer_writes_exactly_the_rules_rows(engine: str, catalog: Catalog, tmp_path: Path) -> None:
    peer = next(p for p in PEERS if p.engine == engine)
    assert peer.missing() is None, peer.missing()
    settings = catalog.settings
    source, sink = peer_topics(engine)
    ensure_topics(settings, [source, sink])
    messages, expected = _messages(catalog.state)
    assert len(expected) > 500  # the walk passes promoted products: most positions give rows
    producer = make_producer(settings)
    for key, value, ts in messages:
        producer.produce(source.name, value, key, timestamp=ts)
    producer.flush(30)

    log = tmp_path / f"{engine}.log"
    proc = start_peer(peer, settings, source.name, sink.name, tmp_path / "state", log)
    try:
        rows = _collect(settings, sink.name, len(expected), lambda: proc.poll() is None)
    finally:
        stop_peer(proc)
    output = log.read_text(errors="replace")
    assert Counter(rows) == Counter(expected), (
        f"{len(rows)} rows, {len(expected)} expected; the peer's log:\n{output[-3000:]}")
    # skipped, not crashed on: the two positions outside every store and the broken record
    assert "'outside_stores': 1" in output and "'unknown_store': 1" in output
    assert "'invalid': 1" in output
