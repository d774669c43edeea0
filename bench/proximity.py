"""`instore bench proximity`: the real path, measured.

Builds the benchmark world (DESIGN.md) on a private embedded stack (Kafka + Redis on free
ports), loads the catalog and promotions, starts the Faust worker(s), warms the pipeline up
(``--warmup`` positions once, then positions at ``--rate`` until ``--warmup-seconds`` have
passed: the broker's JIT), then:

1. latency: produces positions at ``--rate`` (default 2,000/s) for ``--latency-seconds`` and
   measures position ts -> NEARBY row consumed (p50/p99) and -> offer consumed (offer_p50/p99:
   every latency shopper has opted in; dwell is 0 so their first rows may earn offers);
2. throughput: produces ``events`` positions as fast as the producer goes and consumes the
   NEARBY_CUSTOMERS rows back; positions/s = events / (last row - first produce);
3. the Faust ceiling: a Faust agent on the same broker that only consumes and decodes the same
   positions, in its own process, after the worker is stopped (so both had the machine alone);
4. with ``peers``: the same proximity step written with quix-streams and with bytewax, each in
   its own process on the same broker after the worker is stopped, timed as in 1
   (``bench.peers.measure``).

It prints the figures and appends them as one JSON line to ``bench/results/proximity.jsonl``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.processes import cpu_s, rss_mb
from bench.stats import percentile
from instore import results
from instore import topics as t
from instore.embedded import ServiceSpec, Stack, kafka_specs
from instore.embedded.services import child_env_for, isolated_settings
from instore.kafka import ensure_topics, make_consumer, make_producer, produce, wait_for_broker
from instore.proximity import ProximityState
from instore.records import CustomerLocation, ShopperConsent, now_ms
from instore.results import time_left
from instore.settings import Settings, get_settings
from producers.publish import wait_for_worker
from producers.shoppers import walk_positions
from producers.world import build_world

RESULTS = Path(__file__).resolve().parent / "results"
Progress = Callable[[str], None]


@dataclass
class Figures:
    data: dict[str, Any] = field(default_factory=dict)


def _tail_consumer(settings: Settings, topic: t.Topic) -> Consumer:
    # A fetch answers once 16 KiB (~80 rows) have arrived or after 10 ms: at the rates measured
    # that is a millisecond or two, and it spares the broker and this load generator thousands
    # of fetches a second of a few rows each (which took most of a core at 2,000 positions/s).
    c = make_consumer(settings, None, **{"fetch.wait.max.ms": 10, "fetch.min.bytes": 16384})
    parts = t.partitions_of(topic, settings.kafka_partitions)
    c.assign([TopicPartition(topic.name, p, OFFSET_END) for p in range(parts)])
    return c


def _positions(world: Any, n: int, seed: int) -> list[CustomerLocation]:
    shoppers = max(50, n // 400)
    out: list[CustomerLocation] = []
    for pos in walk_positions(world, shoppers=shoppers, seed=seed, hz=2.0):
        out.append(pos)
        if len(out) >= n:
            break
    return out


def run(*, stores: int = 10, products: int = 10_000, promoted: int = 200, events: int = 100_000,
        naive: bool = False, workers: int = 1, rate: float = 2000.0, latency_seconds: float = 10.0,
        ceiling: bool = True, seed: int = 7, consenting: float = 0.3,
        agents: str = "proximity,policy,analytics", peers: bool = False, warmup: int = 20_000,
        warmup_s: float = 60.0, progress: Progress = lambda m: None) -> dict[str, Any]:
    base = get_settings()
    # The whole worker (proximity with the policy and dwell analytics in the same pass). Dwell 0
    # so that a consenting shopper's first NEARBY row may earn an offer (offer latency is then
    # measured on every latency shopper, not only after 5 s of standing still).
    settings = isolated_settings(base, worker_agents=agents,
                                 proximity_index="naive" if naive else "grid", dwell_s=0.0)
    world = build_world(stores, products, promoted, seed=seed)
    tmp = Path(tempfile.mkdtemp(prefix="instore-bench-"))
    stack = Stack(tmp / "logs", env=child_env_for(settings), on_event=progress)
    fig: dict[str, Any] = {
        "bench": "proximity", "engine": "faust", "index": "naive" if naive else "grid",
        "stores": stores, "products": products, "promoted": promoted, "events": events,
        "workers": workers, "partitions": settings.kafka_partitions, "agents": agents,
        "output_linger_ms": settings.worker_output_linger_ms,
        "consenting": consenting, "at": now_ms(),
    }
    tails: list[Consumer] = []
    try:
        for spec in kafka_specs(settings, tmp):
            stack.start(spec)
        stack.start(ServiceSpec("redis", _redis(settings, tmp), port=settings.redis_port))
        wait_for_broker(settings)
        ensure_topics(settings)
        producer = make_producer(settings)
        positions = _load(producer, world, events, seed, int(rate * latency_seconds),
                          consenting, progress)
        # In-process figures: the rule's cost per position, index vs naive, no Kafka involved.
        state = _proximity_state(world)
        fig.update(_micro(state, positions[:5000]))

        for i in range(workers):
            stack.start(ServiceSpec(f"worker-{i + 1}", [sys.executable, "-m", "instore", "worker"]))
        tails.append(nearby := _tail_consumer(settings, t.NEARBY_CUSTOMERS))
        tails.append(offers := _tail_consumer(settings, t.OFFERS))
        probe = _wait_for_workers(settings, world, nearby, offers, progress)
        if warmup:
            _warm_up(settings, producer, nearby, offers, state, positions[:warmup], warmup_s,
                     rate, progress)
        fig["warmup_positions"] = warmup
        fig["warmup_seconds"] = warmup_s

        progress(f"latency: {rate:,.0f} positions/s for {latency_seconds:.0f} s")
        fig.update(_latency_run(stack, producer, nearby, offers, positions, rate, latency_seconds))
        progress(f"throughput: {events:,} positions")
        fig.update(_throughput_run(stack, settings, producer, nearby, offers, state, positions,
                                   progress))
        fig["worker_max_rss_mb"] = rss_mb(stack)
        for name in [n for n in stack.services if n.startswith("worker")]:
            stack.services[name].spec.restart = False
        _stop_workers(stack)
        if ceiling:
            progress("Faust ceiling: a consume-and-decode agent on the same positions")
            fig.update(_ceiling(settings, tmp, events))
            if fig.get("faust_ceiling_events_per_s"):
                fig["ratio_to_ceiling"] = round(
                    fig["events_per_s"] / fig["faust_ceiling_events_per_s"], 3)
        if peers:
            from bench.peers.measure import run_peers  # noqa: PLC0415 - imports this module: imported here

            fig.update(run_peers(settings, stack, tmp, state, probe, positions, progress))
            if fig["best_peer"]:
                fig["ratio_to_best_peer"] = round(
                    fig["events_per_s"] / fig[f"peer_{fig['best_peer']}_events_per_s"], 3)
    finally:
        for client in tails:
            with contextlib.suppress(RuntimeError):
                client.close()
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the private stack's data: gigabytes
    return results.append("proximity", fig)


def _warm_up(settings: Settings, producer: Any, nearby: Consumer, offers: Consumer,
             state: ProximityState, positions: list[CustomerLocation], seconds: float,
             rate: float, progress: Progress) -> None:
    """Unmeasured: ``positions`` through the pipeline once as fast as it goes (the worker's
    per-store caches), then positions at ``rate`` until ``seconds`` have passed, as the latency
    run sends them. A freshly started broker JIT-compiles its hot paths for minutes on two cores
    (its compiler threads took a quarter of a core during a latency run that followed a minute
    of bulk warm-up only: the trickle's small requests run other code than the bulk's)."""
    progress(f"warm-up: {len(positions):,} positions, then {rate:,.0f}/s until "
             f"{seconds:.0f} s have passed, not measured")
    end = time.monotonic() + seconds
    _throughput(settings, producer, nearby, offers, state, positions)
    _drain(nearby, 1.0)
    _drain(offers, 0.5)
    while (left := end - time.monotonic()) > 1:
        _latency(producer, nearby, offers, positions, rate, min(left, 20.0), prefix="warm")
        _drain(nearby, 1.0)
        _drain(offers, 0.5)


def _load(producer: Any, world: Any, events: int, seed: int, n_latency: int, consenting: float,
          progress: Progress) -> list[CustomerLocation]:
    """The catalog, the walkers' positions (returned) and the consents: a ``consenting`` share
    of the walkers and every one of the ``n_latency`` latency shoppers."""
    progress(f"loading {len(world.products):,} products and {len(world.promotions)} promotions")
    for p in world.products:
        produce(producer, t.STORES_PRODUCTS, p)
    for q in world.promotions:
        produce(producer, t.PRODUCTS_PROMOTIONS, q)
    positions = _positions(world, events, seed)
    consents = _consenting_uids(positions, consenting) | {
        _latency_uid(i) for i in range(n_latency)}
    progress(f"opting in {len(consents):,} shoppers ({consenting:.0%} of the walkers and "
             "every latency shopper)")
    for uid in sorted(consents):
        produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=uid, opted_in=True,
                                                             updated_at=now_ms()))
    producer.flush(60)
    return positions


def _proximity_state(world: Any) -> ProximityState:
    state = ProximityState()
    for p in world.products:
        state.upsert_product(p)
    for q in world.promotions:
        state.upsert_promotion(q)
    return state


def _wait_for_workers(settings: Settings, world: Any, nearby: Consumer, offers: Consumer,
                      progress: Progress) -> Any:
    """Until a promoted product's position comes back as a NEARBY row (180 s at most), then
    the rows and offers so far drained; returns that product (the peers' probe)."""
    progress("waiting for the worker to join and load the catalog")
    probe = next(p for p in world.products if p.sku == world.promotions[0].sku)
    if not wait_for_worker(settings, probe, timeout_s=180):
        msg = "the worker did not produce NEARBY rows within 180 s (see its log)"
        raise RuntimeError(msg)
    _drain(nearby, 1.0)
    _drain(offers, 0.5)
    return probe


def _latency_run(stack: Stack, producer: Any, nearby: Consumer, offers: Consumer,
                 positions: list[CustomerLocation], rate: float,
                 seconds: float) -> dict[str, Any]:
    """The latency figures and what each part cost per position at that rate (the load
    generator included); its tail is drained, not to count as throughput."""
    cpu0 = {n: cpu_s(stack, n) for n in ("worker", "broker")}
    bench0 = time.process_time()
    fig = _latency(producer, nearby, offers, positions, rate, seconds)
    n_lat = max(1, fig["latency_positions"])
    for n in ("worker", "broker"):
        fig[f"latency_{n}_cpu_us_per_position"] = round(
            (cpu_s(stack, n) - cpu0[n]) / n_lat * 1e6, 1)
    fig["latency_bench_cpu_us_per_position"] = round(
        (time.process_time() - bench0) / n_lat * 1e6, 1)
    _drain(nearby, 3.0)  # the latency run's tail must not count as throughput
    _drain(offers, 0.5)
    return fig


def _throughput_run(stack: Stack, settings: Settings, producer: Any, nearby: Consumer,
                    offers: Consumer, state: ProximityState, positions: list[CustomerLocation],
                    progress: Progress) -> dict[str, Any]:
    """The throughput figures and the CPU time per position of the workers and the broker:
    what each costs, whatever else runs on the machine at the same time."""
    cpu0 = {n: cpu_s(stack, n) for n in ("worker", "broker")}
    fig = _throughput(settings, producer, nearby, offers, state, positions, progress=progress)
    for n in ("worker", "broker"):
        fig[f"{n}_cpu_us_per_position"] = round(
            (cpu_s(stack, n) - cpu0[n]) / len(positions) * 1e6, 1)
    return fig


def _redis(settings: Settings, tmp: Path) -> list[str]:
    from instore.embedded import redis_argv  # noqa: PLC0415

    return redis_argv(settings.redis_port, tmp / "redis")


def _micro(state: ProximityState, sample: list[CustomerLocation]) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = sum(len(state.match_rows(p, p.ts or 0)) for p in sample)
    grid_us = (time.perf_counter() - t0) / len(sample) * 1e6
    few = sample[:300]
    t0 = time.perf_counter()
    for p in few:
        state.match_rows_naive(p, p.ts or 0)
    naive_us = (time.perf_counter() - t0) / len(few) * 1e6
    return {"match_us_per_position": round(grid_us, 2), "naive_match_us_per_position":
            round(naive_us, 2), "matches_per_position": round(rows / len(sample), 3)}


def _drain(consumer: Consumer, quiet_s: float) -> int:
    n = 0
    last = time.monotonic()
    while time.monotonic() - last < quiet_s:
        msgs = consumer.consume(10_000, 0.1)
        if msgs:
            n += len(msgs)
            last = time.monotonic()
    return n


def _consenting_uids(positions: list[CustomerLocation], share: float) -> set[str]:
    """A stable ``share`` of the walkers (by a hash of the uid, the same for every run)."""
    uids = {p.uid for p in positions}
    return {u for u in uids if (zlib.crc32(u.encode()) % 1000) < share * 1000}


def _latency_uid(i: int, prefix: str = "lat") -> str:
    # 1,000 latency shoppers, each reporting every 1,000th position (2 Hz at 2,000/s, as the
    # walkers do): no shopper sends two positions in the same millisecond, so every position
    # is told apart by (uid, ts). The warm-up's shoppers ("warm") have not opted in: the
    # measured shoppers reach the latency run with no offers yet (not capped).
    return f"{prefix}-{i % 1000}"


PROGRESS_EVERY_S = 5.0


def _throughput(settings: Settings, producer: Any, nearby: Consumer, offers: Consumer | None,
                state: ProximityState, positions: list[CustomerLocation],
                topic: str = t.CUSTOMERS_LOCATIONS.name,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Produce ``positions`` to ``topic`` as fast as the producer goes and consume the rows back
    on ``nearby`` (and the offers, when ``offers`` is given): positions/s = positions / (last row
    consumed - first produce)."""
    now = now_ms()
    expected = 0
    payloads = []
    for i, p in enumerate(positions):
        ts = now + i // 50  # spread over time like a live feed, ~50 positions per ms
        expected += len(state.match_rows(p, ts))
        payloads.append((p.uid.encode(), orjson.dumps(p.model_dump() | {"ts": ts}), ts))
    t0 = time.perf_counter()
    cpu0 = time.process_time()  # the load generator's own CPU while the positions flow
    for key, value, ts in payloads:
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    t_produced = time.perf_counter() - t0
    got = 0
    t_last = t0
    deadline = time.monotonic() + max(120, len(positions) / 500)
    n_offers = 0
    told = time.monotonic()
    while got < expected and time.monotonic() < deadline:
        msgs = nearby.consume(10_000, 0.2)
        if msgs:
            got += sum(1 for m in msgs if not m.error())
            t_last = time.perf_counter()
        if offers is not None:
            n_offers += sum(1 for m in offers.consume(10_000, 0) if not m.error())
        if progress is not None and time.monotonic() - told >= PROGRESS_EVERY_S and got:
            told = time.monotonic()
            progress(f"  {got / expected:.0%} of the rows, {time_left(got, expected, t0)}")
    seconds = t_last - t0
    if offers is not None:
        n_offers += _drain(offers, 1.0)
    return {
        "events_per_s": round(len(positions) / seconds, 1),
        "rows_per_s": round(got / seconds, 1),
        "nearby_rows": got, "nearby_rows_expected": expected, "offers": n_offers,
        "produce_events_per_s": round(len(positions) / t_produced, 1),
        "bench_cpu_us_per_position": round((time.process_time() - cpu0) / len(positions) * 1e6, 1),
        "throughput_seconds": round(seconds, 3),
    }


@contextlib.contextmanager
def _own_gc_quiet() -> Iterator[None]:
    """The load generator's own garbage collector kept out of the figures: what it holds (the
    world, the positions) is exempt while the latency run measures (a full collection over it
    stopped the generator for 134 ms, and rows that arrived meanwhile were timed that late)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _latency(producer: Any, nearby: Consumer, offers: Consumer,
             positions: list[CustomerLocation], rate: float, seconds: float,
             prefix: str = "lat") -> dict[str, Any]:
    with _own_gc_quiet():
        return _timed_rows(producer, nearby, offers, positions, rate, seconds, prefix)


def _timed_rows(producer: Any, nearby: Consumer, offers: Consumer,
                positions: list[CustomerLocation], rate: float, seconds: float,
                prefix: str) -> dict[str, Any]:
    n = int(rate * seconds)
    sent_at: dict[tuple[str, int], float] = {}
    lat_nearby: dict[tuple[str, int], float] = {}
    lat_offer: dict[str, float] = {}
    by_second: dict[int, list[float]] = {}  # second of the run the position was sent in
    t_start = time.perf_counter()
    i = 0

    def take(msgs: list[Any]) -> None:
        now = time.time() * 1000
        for m in msgs:
            if m.error():
                continue
            if m.topic() == t.OFFERS.name:
                offer = orjson.loads(m.value())
                if offer["uid"].startswith(f"{prefix}-") and offer["offer_id"] not in lat_offer:
                    lat_offer[offer["offer_id"]] = now - offer["ts"]
                continue
            # a row's key is the uid and its timestamp the position's ts (no need to parse it)
            k = (m.key().decode(), m.timestamp()[1])
            if k in sent_at and k not in lat_nearby:
                lat_nearby[k] = now - k[1]
                by_second.setdefault(int(sent_at[k] - t_start), []).append(now - k[1])

    def poll_outputs(timeout_s: float) -> None:
        # Block on the first row (no busy loop: the load generator must not take the CPU
        # the worker and broker need), then take whatever else has arrived.
        first = nearby.poll(timeout_s)
        if first is not None:
            take([first])
        take(nearby.consume(10_000, 0))
        take(offers.consume(10_000, 0))

    tick_s = 0.005  # positions go out in bursts of rate * 5 ms, each stamped when sent
    next_tick = t_start
    while i < n:
        due = min(n, int((time.perf_counter() - t_start) * rate) + 1)
        while i < due:
            p = positions[i % len(positions)]
            ts = now_ms()
            uid = _latency_uid(i, prefix)
            sent_at[(uid, ts)] = time.perf_counter()
            value = orjson.dumps(p.model_dump() | {"uid": uid, "ts": ts})
            while True:
                try:
                    producer.produce(t.CUSTOMERS_LOCATIONS.name, value, uid.encode(), timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.01)
            i += 1
        producer.poll(0)
        next_tick += tick_s
        while (left := next_tick - time.perf_counter()) > 0:
            poll_outputs(left)
    producer.flush(30)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        poll_outputs(0.05)
    vals = list(lat_nearby.values())
    out: dict[str, Any] = {
        "latency_rate_per_s": rate, "latency_positions": n,
        "positions_with_rows": len(vals),
        "p50_ms": percentile(vals, 0.50, 2, empty=math.nan),
        "p99_ms": percentile(vals, 0.99, 2, empty=math.nan),
        "latency_offers": len(lat_offer),
        "offer_p50_ms": percentile(lat_offer.values(), 0.50, 2, empty=math.nan),
        "offer_p99_ms": percentile(lat_offer.values(), 0.99, 2, empty=math.nan),
        # where in the run the slow rows were: the start (every shopper's first offers at
        # once) or stalls spread over it
        "p99_ms_by_second": [percentile(by_second[s], 0.99, 0) for s in sorted(by_second)],
    }
    return out


def _stop_workers(stack: Stack) -> None:
    stack.stop_services([n for n in stack.services if n.startswith("worker")])


def _ceiling(settings: Settings, tmp: Path, events: int) -> dict[str, Any]:
    out = tmp / "ceiling.json"
    env = child_env_for(settings)
    import os  # noqa: PLC0415

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.faust_ceiling", "--events", str(events), "--out", str(out)],
        env=os.environ | env, stdout=(tmp / "ceiling.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=max(180, events / 1000))
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"faust_ceiling_events_per_s": None}
    data = json.loads(out.read_text()) if out.exists() else {}
    return {"faust_ceiling_events_per_s": round(data.get("events_per_s", 0.0), 1) or None}


def max_rss_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
