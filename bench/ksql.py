"""`instore bench ksql`: NEARBY_CUSTOMERS from ksql/migrations/ on the local endpoint's engine.

On a private embedded Kafka broker (free ports, temporary data, stopped at the end): applies
V000001-V000003 (sources, promoted products per store, the NEARBY_CUSTOMERS stream) and the
writer ksql/nearby_writer/nearby_customers.sql (NEARBY_ENGINE=ksqldb's query), loads the benchmark
world (DESIGN.md: S stores, P products per store, K promoted per store, radii 10/25/50/100
ft), waits until the tables are built, then

1. throughput: produces ``events`` shopper positions (2 Hz walks) as fast as the producer
   goes; positions/s = events / (last record processed by the NEARBY queries - first produce);
2. latency: produces positions at ``rate``/s for ``latency_s`` seconds with ts = now, and
   measures ts -> NEARBY_CUSTOMERS row consumed (p50/p99).

Same JSON keys as the spine's bench (`instore bench proximity`).
"""

from __future__ import annotations

import contextlib
import cProfile
import math
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, TopicPartition

from bench.stats import percentile
from instore import results
from instore import topics as t
from instore.embedded.kafka import EmbeddedKafka
from instore.kafka import ensure_topics, make_consumer, make_producer, wait_for_broker
from instore.records import now_ms
from instore.results import time_left
from instore.settings import Settings, get_settings
from stream_apps.ksqldb.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
Progress = Callable[[str], None] | None


PROGRESS_EVERY_S = 5.0  # how often a long wait says how far it is


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(f"[cyan]bench ksql[/] {msg}")


def run_bench(
    *,
    products: int = 10_000,
    promoted: int = 200,
    stores: int = 10,
    events: int = 20_000,
    rate: float = 2000.0,
    latency_s: float = 5.0,
    seed: int = 7,
    progress: Progress = None,
    profile: Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    from producers.world import build_world  # noqa: PLC0415

    tmp = tempfile.TemporaryDirectory(prefix="instore-bench-ksql-")
    broker = EmbeddedKafka(Path(tmp.name))
    engine: Engine | None = None
    try:
        broker.start()
        base = get_settings()
        settings = Settings(**{**base.model_dump(), "kafka_bootstrap_servers": broker.bootstrap})
        wait_for_broker(settings)
        ensure_topics(settings)
        engine = _start_engine(settings, threads)
        world = build_world(stores=stores, products=products, promoted=promoted, seed=seed)
        _say(
            progress,
            f"loading {len(world.products):,} products, {len(world.promotions)} promotions",
        )
        producer = make_producer(settings)
        setup_s = _load_world(engine, producer, world)
        _say(progress, f"tables built in {setup_s:.1f} s; producing {events:,} positions")
        positions = _positions(world, events, seed)
        run = _throughput(engine, producer, positions, progress, profile)
        fig: dict[str, Any] = {
            "engine": "ksql-local",
            "stores": stores,
            "products": products,
            "promoted": promoted,
            "events": run.events,
            "events_per_s": round(run.events / run.elapsed, 1),
            "rows_per_s": round(run.rows / run.elapsed, 1),
            "matches_per_position": round(run.rows / run.events, 3),
            "setup_s": round(setup_s, 2),
            "processes": run.processes,
            # where the time went: the query's processes busy processing (decode, evaluate,
            # produce; summed) vs the elapsed time, and this process's CPU (its share of the
            # query + client threads + the bench's producer) per position
            "query_busy_s": round(run.busy, 3),
            "elapsed_s": round(run.elapsed, 3),
            # CPU of the query threads alone (all processes): the Python engine's own cost
            "query_cpu_us_per_position": round(run.query_cpu / run.events * 1e6, 1),
            "cpu_us_per_position": round(run.cpu / run.events * 1e6, 1),
            "cores": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        # latency at a rate the engine sustains (half its throughput, at most ``rate``)
        lat_rate = max(50.0, min(rate, fig["events_per_s"] / 2))
        _say(progress, f"{fig['events_per_s']:,.0f} positions/s; latency run at {lat_rate:.0f}/s")
        fig |= _latency(settings, producer, positions, lat_rate, latency_s)
        fig["measured_at"] = now_ms()
        with contextlib.suppress(OSError):
            fig = results.append("ksql", fig)
        return fig
    finally:
        if engine is not None:
            engine.close()
        broker.stop()
        tmp.cleanup()


def _start_engine(settings: Settings, threads: int | None) -> Engine:
    """The local engine with V000001-V000003 and the NEARBY_CUSTOMERS writer applied."""
    engine = Engine(settings, replay=False)
    if threads is not None:  # processes per per-record query (workers.py)
        engine.properties["ksql.streams.num.stream.threads"] = str(threads)
    for path in sorted((ROOT / "ksql" / "migrations").glob("V00000[123]__*.sql")):
        engine.execute(path.read_text(), {})
    engine.execute((ROOT / "ksql" / "nearby_writer" / "nearby_customers.sql").read_text(), {})
    return engine


def _load_world(engine: Engine, producer: Any, world: Any) -> float:
    """Products and promotions in, then wait until the engine built its tables; the seconds
    it took."""
    t_load = time.monotonic()
    for p in world.products:
        key = (t.STORES_PRODUCTS.key_of(p) or "").encode()
        producer.produce(t.STORES_PRODUCTS.name, key=key, value=p.to_json())
        producer.poll(0)
    for q in world.promotions:
        producer.produce(t.PRODUCTS_PROMOTIONS.name, key=q.pid.encode(), value=q.to_json())
    producer.flush(60)
    if not engine.wait_idle(600):
        msg = "the engine did not build the promoted-products tables in time"
        raise RuntimeError(msg)
    return time.monotonic() - t_load


def _positions(world: Any, events: int, seed: int) -> list[Any]:
    """``events`` positions of shoppers walking at 2 Hz."""
    from producers.shoppers import walk_positions  # noqa: PLC0415

    positions = []
    for pos in walk_positions(world, shoppers=max(50, events // 400), seed=seed, hz=2.0):
        positions.append(pos)
        if len(positions) >= events:
            break
    return positions


@dataclass(frozen=True)
class _Run:
    """What the throughput run measured on the NEARBY_CUSTOMERS queries."""

    events: int
    elapsed: float  # first produce -> the queries' last record processed
    rows: int
    busy: float  # the queries' processes busy, summed
    query_cpu: float  # the query threads' CPU
    cpu: float  # this process's CPU
    processes: int


def _throughput(engine: Engine, producer: Any, positions: list[Any], progress: Progress,
                profile: Path | None) -> _Run:
    """Every position as fast as the producer goes, until the NEARBY queries consumed all."""
    payloads = [(p.uid.encode(), p.to_json(), p.ts) for p in positions]
    nearby_q = [q for q in engine.queries.values()
                if q.sink is not None and q.sink.name == t.NEARBY_CUSTOMERS.name]
    if profile is not None:
        for runner in nearby_q:
            runner.profile = cProfile.Profile()
    busy0 = sum(q.busy_s for q in nearby_q)
    qcpu0 = sum(q.cpu_s for q in nearby_q)
    cpu0 = time.process_time()
    before_out = sum(q.records_out for q in nearby_q)
    before_in = sum(q.consumed.get(t.CUSTOMERS_LOCATIONS.name, 0) for q in nearby_q)
    t0 = time.monotonic()
    _produce_all(producer, payloads)
    _wait_consumed(nearby_q, before_in, len(payloads), progress)
    engine.wait_idle(120, settle=0.2)
    t_end = max(q.last_active for q in nearby_q)
    run = _Run(events=len(payloads), elapsed=max(t_end - t0, 1e-9),
               rows=sum(q.records_out for q in nearby_q) - before_out,
               busy=sum(q.busy_s for q in nearby_q) - busy0,
               query_cpu=sum(q.cpu_s for q in nearby_q) - qcpu0,
               cpu=time.process_time() - cpu0,
               processes=max(q.worker_count for q in nearby_q))
    if profile is not None:
        _dump_profile(nearby_q, profile)
    return run


def _produce_all(producer: Any, payloads: list[tuple[bytes, bytes, int | None]]) -> None:
    for key, value, ts in payloads:
        while True:
            try:
                producer.produce(
                    t.CUSTOMERS_LOCATIONS.name, key=key, value=value, timestamp=ts or 0
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)


def _wait_consumed(nearby_q: list[Any], before_in: int, total: int, progress: Progress) -> None:
    """Until the NEARBY queries consumed ``total`` more positions (saying how far, every few
    seconds); 600 s at most."""
    topic = t.CUSTOMERS_LOCATIONS.name
    deadline = time.monotonic() + 600
    told, started = time.monotonic(), time.perf_counter()
    while (done := sum(q.consumed.get(topic, 0) for q in nearby_q) - before_in) < total:
        if time.monotonic() > deadline:
            msg = "the engine did not catch up with the positions"
            raise RuntimeError(msg)
        if time.monotonic() - told >= PROGRESS_EVERY_S:
            told = time.monotonic()
            _say(progress, f"  {done / total:.0%} of the positions, "
                           f"{time_left(done, total, started)}")
        time.sleep(0.05)


def _dump_profile(nearby_q: list[Any], profile: Path) -> None:
    """The NEARBY queries' cProfiles, merged, written to ``profile`` (pstats)."""
    stats = None
    for runner in nearby_q:
        if runner.profile is not None:
            runner.profile.disable()
            stats = (pstats.Stats(runner.profile) if stats is None
                     else stats.add(runner.profile))
    if stats is not None:
        stats.dump_stats(str(profile))


def _latency(
    settings: Settings, producer: Any, positions: list[Any], rate: float, seconds: float
) -> dict[str, Any]:
    consumer = make_consumer(settings, None, **{"fetch.wait.max.ms": 5})
    md = consumer.list_topics(t.NEARBY_CUSTOMERS.name, timeout=10).topics[t.NEARBY_CUSTOMERS.name]
    consumer.assign([TopicPartition(t.NEARBY_CUSTOMERS.name, p, OFFSET_END) for p in md.partitions])
    time.sleep(1.0)
    lat: list[float] = []
    n = int(rate * seconds)
    start = time.monotonic()
    phase_start = now_ms()
    sent = 0
    try:
        while sent < n or time.monotonic() - start < seconds + 3:
            due = int((time.monotonic() - start) * rate)
            while sent < min(due, n):
                pos = positions[sent % len(positions)]
                value = orjson.loads(pos.to_json())
                value["ts"] = now_ms()
                producer.produce(
                    t.CUSTOMERS_LOCATIONS.name,
                    key=pos.uid.encode(),
                    value=orjson.dumps(value),
                    timestamp=value["ts"],
                )
                sent += 1
            producer.poll(0)
            for m in consumer.consume(500, timeout=0.002):
                if m.error() is None and m.value() is not None:
                    ts = orjson.loads(m.value() or b"{}").get("ts") or 0
                    if ts >= phase_start:  # rows of this run only
                        lat.append(now_ms() - ts)
    finally:
        consumer.close()
    return {
        "p50_ms": percentile(lat, 0.5, empty=math.nan),
        "p99_ms": percentile(lat, 0.99, empty=math.nan),
        "latency_rows": len(lat),
        "latency_rate": rate,
    }
