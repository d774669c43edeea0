"""`instore bench push`: position produced -> offer received by a browser-like subscriber
(one Ably realtime WebSocket connection per shopper, as the pages' ably-js opens, or the hub's
SSE stream with ``transport="sse"``), on a fresh embedded stack (Kafka, redis-server,
`instore worker`, the push sink and the push hub, each its own process).

The world: one store with ``K`` promoted products on a 5 m grid (radius 10 ft, so a shopper is
near one product at a time); every shopper is opted in and cycles "stop at a product for
dwell + 1 s, walk for 2 s", reporting positions so the total rate is ``rate``/s. Each offer
carries the event time of the position that earned it (``Offer.ts``); latency = the local
receive time at the subscriber - that ts (one clock: everything runs on this machine).
With ``offers_only`` the worker is skipped and offers are produced directly (offer produced ->
received).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.processes import Child, wait_http, wait_port
from bench.push_subscribers import Collector
from bench.stats import percentile
from instore import results
from instore import topics as t
from instore.embedded import free_port, redis_argv
from instore.embedded.kafka import EmbeddedKafka
from instore.kafka import ensure_topics, make_producer, produce, wait_for_broker
from instore.records import (
    CustomerLocation,
    Offer,
    Promotion,
    ShopperConsent,
    StoreProduct,
    now_ms,
)
from instore.settings import Settings
from mobile_push.local_hub.tokens import ApiKey, TokenAuthority

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
LAT0, LON0 = 51.5072, -0.1276
M_LAT = 1 / 111_111.0
SPACING_M = 5.0
WALK_S = 2.0


class World:
    def __init__(self, store: str, products: int, shoppers: int, dwell_s: float) -> None:
        self.store = store
        self.k = products
        self.cols = max(1, int(math.sqrt(products)))
        self.m_lon = 1 / (111_111.0 * math.cos(math.radians(LAT0)))
        self.uids = [f"bench-{i:05d}" for i in range(shoppers)]
        self.stop_s = dwell_s + 1.0
        self.cycle_s = self.stop_s + WALK_S

    def xy(self, p: int) -> tuple[float, float]:
        return (p % self.cols) * SPACING_M + 5.0, (p // self.cols) * SPACING_M + 5.0

    def latlon(self, x: float, y: float) -> tuple[float, float]:
        return LAT0 + y * M_LAT, LON0 + x * self.m_lon

    def products(self) -> list[StoreProduct]:
        out = []
        for p in range(self.k):
            lat, lon = self.latlon(*self.xy(p))
            out.append(
                StoreProduct(
                    sku=p,
                    store_id=self.store,
                    segment="bench",
                    name=f"Product {p}",
                    latitude=lat,
                    longitude=lon,
                    country="GB",
                )
            )
        return out

    def promotions(self) -> list[Promotion]:
        return [
            Promotion(
                pid=f"bench-p{p}",
                sku=p,
                title=f"Deal on product {p}",
                discount_pct=10 + p % 40,
                radius_ft=10,
            )
            for p in range(self.k)
        ]

    def position(self, i: int, t_s: float) -> tuple[float, float]:
        t_i = t_s + (i * 0.37) % self.cycle_s  # shoppers out of phase
        k, phase = divmod(t_i, self.cycle_s)
        p = (i * 7 + int(k) * 13) % self.k
        x, y = self.xy(p)
        if phase < self.stop_s:
            return self.latlon(x + 0.3, y)
        return self.latlon(x + SPACING_M / 2, y + SPACING_M / 2)  # in the aisle, near nothing


def _proc(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    out = log_path.open("ab")
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    out.close()
    return proc


def run_bench(
    *,
    rate: float = 2000.0,
    seconds: float = 20.0,
    shoppers: int = 400,
    products: int = 200,
    dwell_s: float = 2.0,
    offers_only: bool = False,
    transport: str = "websocket",
    results_path: Path | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """``progress`` gets a line per phase and, while positions are sent, one every 5 s with
    the time left."""
    with_worker = not offers_only and (ROOT / "stream_apps" / "app.py").exists()
    with tempfile.TemporaryDirectory(prefix="instore-bench-push-") as tmp:
        stack = _PrivateStack(Path(tmp), dwell_s=dwell_s, with_worker=with_worker)
        progress("starting Kafka, Redis, the push hub, the sink"
                 + (" and the worker" if with_worker else ""))
        stack.start_broker_and_redis()
        collector: Collector | None = None
        try:
            stack.start_services()
            world = World("bench-s1", products, shoppers, dwell_s)
            producer = make_producer(stack.settings)
            if with_worker:
                _seed(producer, world)
            collector = _subscribe(stack, world, transport, progress)
            progress("warming up: one offer end to end")
            try:
                _warm_up(stack.settings, producer, world, collector, with_worker, stack.children)
            except RuntimeError as exc:
                tails = "\n".join(f"--- {c.name} ---\n{c.tail(15)}" for c in stack.children)
                msg = f"{exc}\n{tails}"
                raise RuntimeError(msg) from None
            collector.measure_from_ms = now_ms()
            produced, elapsed = _drive(producer, world, rate, seconds, with_worker, progress)
            progress("waiting for the last offers (until 3 s pass without one)")
            _wait_for_the_tail(collector)
        finally:
            if collector is not None:
                collector.stop()
            sink_summary = stack.stop()

    where = "realtime WebSocket" if transport == "websocket" else "SSE"
    result = {
        "bench": "push",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "measures": f"position ts -> offer received on hub {where}"
        if with_worker
        else f"offer produced -> received on hub {where} (worker skipped)",
        "transport": transport,
        "rate_target": rate,
        "rate_actual": round(produced / elapsed, 1) if elapsed else 0.0,
        "produced": produced,
        "seconds": seconds,
        "shoppers": shoppers,
        "products": products,
        "dwell_s": dwell_s,
        **_latency_figures(collector),
        # where the time goes: offer ts -> consumed by the sink / -> acknowledged by the hub
        "sink": sink_summary,
    }
    result = results.append("push", result, path=results_path)
    return result


class _PrivateStack:
    """The bench's own stack in ``work``: the embedded broker, redis-server, and the push hub,
    the sink and (``with_worker``) the worker as `instore` child processes."""

    def __init__(self, work: Path, *, dwell_s: float, with_worker: bool) -> None:
        self.work, self.dwell_s, self.with_worker = work, dwell_s, with_worker
        (work / ".instore" / "faust").mkdir(parents=True)  # the worker's relative data dir
        self.redis_port, self.hub_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.hub_port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.children: list[Child] = []

    def start_broker_and_redis(self) -> None:
        self.broker = EmbeddedKafka(self.work / "kafka").start()
        self.settings = Settings(
            _env_file=None,
            kafka_bootstrap_servers=self.broker.bootstrap,  # type: ignore[call-arg]
            redis_url=f"redis://127.0.0.1:{self.redis_port}/0",
            hub_port=self.hub_port,
            dwell_s=self.dwell_s,
        )
        self.env = self._child_env()
        self.procs.append(_proc(redis_argv(self.redis_port, self.work / "redis"),
                                self.work / "redis.log"))

    def _child_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "REDIS_", "ABLY_", "HUB_", "DWELL_"))
        }
        return env | {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "REDIS_URL": self.settings.redis_address,
            "HUB_PORT": str(self.hub_port),
            "DWELL_S": str(self.dwell_s),
            "INSTORE_APP_ID": f"instore-bench-push-{self.hub_port}",
            "WEB_PORT": str(free_port()),  # the Faust worker's web server, loopback only
            "WEB_BIND": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }

    def start_services(self) -> None:
        """Once Redis and the broker answer: the topics, then the hub, the sink, the worker."""
        wait_port("127.0.0.1", self.redis_port)
        wait_for_broker(self.settings, 60)
        ensure_topics(self.settings)
        self._start_child("hub", ["push", "hub"])
        self._start_child("sink", ["push", "sink"])
        if self.with_worker:
            self._start_child("worker", ["worker", "--loglevel", "warn"])
        wait_http(f"{self.base}/time", self.children[0], 60)

    def _start_child(self, name: str, argv: list[str]) -> None:
        child = Child(name, argv, self.env, self.work / f"{name}.log", cwd=self.work)
        self.children.append(child.start())

    def stop(self) -> dict[str, int]:
        """Stop everything, the children first; returns the sink's summary from its log."""
        for c in reversed(self.children):
            c.stop()
        sink_summary = _sink_summary(self.work / "sink.log")
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
        self.broker.stop()
        return sink_summary


def _seed(producer: Any, world: World) -> None:
    """The world's products and promotions, every shopper (and the warm-up one) opted in."""
    for prod in world.products():
        produce(producer, t.STORES_PRODUCTS, prod)
    for promo in world.promotions():
        produce(producer, t.PRODUCTS_PROMOTIONS, promo)
    for uid in [*world.uids, "bench-warmup"]:
        produce(
            producer,
            t.SHOPPER_CONSENTS,
            ShopperConsent(uid=uid, opted_in=True, updated_at=now_ms()),
        )
    producer.flush(30)


def _subscribe(stack: _PrivateStack, world: World, transport: str,
               progress: Callable[[str], None]) -> Collector:
    """A subscriber on every shopper's channel, attached (or 30 s passed)."""
    key = ApiKey.parse(stack.settings.ably_key)
    token = TokenAuthority([key]).issue(
        key, {"shopper:*": frozenset({"subscribe"})}, "bench", 3_600_000, now_ms()
    )["token"]
    collector = Collector(
        stack.base, [f"shopper:{u}" for u in [*world.uids, "bench-warmup"]], token, transport
    )
    collector.start()
    progress(f"subscribing {len(collector.channels)} shopper channels ({transport})")
    deadline = time.monotonic() + 30
    while collector.attached < len(collector.channels) and time.monotonic() < deadline:
        time.sleep(0.1)
    return collector


def _wait_for_the_tail(collector: Collector) -> None:
    """Let the tail arrive: wait until nothing new arrives for 3 s (bounded)."""
    last, quiet_since, end = -1, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < end and time.monotonic() - quiet_since < 3:
        n = sum(collector.ids.values())
        if n != last:
            last, quiet_since = n, time.monotonic()
        time.sleep(0.2)


def _latency_figures(collector: Collector) -> dict[str, Any]:
    lat = sorted(collector.latencies)
    return {
        "received": len(lat),
        "duplicates": sum(c - 1 for c in collector.ids.values() if c > 1),
        "p50_ms": percentile(lat, 0.50, 1, empty=math.nan),
        "p90_ms": percentile(lat, 0.90, 1, empty=math.nan),
        "p99_ms": percentile(lat, 0.99, 1, empty=math.nan),
        "max_ms": round(lat[-1], 1) if lat else None,
    }


def _sink_summary(log_path: Path) -> dict[str, int]:
    if not log_path.exists():
        return {}
    lines = [x for x in log_path.read_text(errors="replace").splitlines() if "sink stopped" in x]
    if not lines:
        return {}
    out = {}
    for part in lines[-1].split("stopped:", 1)[1].split():
        k, _, v = part.partition("=")
        if k.endswith(("_p50", "_p99")) and v.lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _warm_up(
    settings: Settings,
    producer: Any,
    world: World,
    collector: Collector,
    with_worker: bool,
    children: list[Child],
) -> None:
    """Wait until the whole path delivers (the worker's group join and table loads take a while
    on the embedded broker)."""
    deadline = time.monotonic() + 180
    n = 0
    while time.monotonic() < deadline:
        if any(i.startswith("warm") for i in collector.ids):
            return
        dead = [c.name for c in children if not c.alive]
        if dead:
            msg = f"{', '.join(dead)} exited during warm-up"
            raise RuntimeError(msg)
        if with_worker:
            lat, lon = world.latlon(*world.xy(0))
            produce(
                producer,
                t.CUSTOMERS_LOCATIONS,
                CustomerLocation(
                    uid="bench-warmup",
                    store_id=world.store,
                    latitude=lat,
                    longitude=lon,
                    ts=now_ms(),
                    source="sim",
                ),
            )
        else:
            ts = now_ms()
            produce(
                producer,
                t.OFFERS,
                Offer(
                    offer_id=f"warm-{n}",
                    uid="bench-warmup",
                    store_id=world.store,
                    pid="warm",
                    sku=0,
                    title="warm",
                    discount_pct=1,
                    distance_ft=0,
                    ts=ts,
                    expires_at=ts + 60_000,
                ),
            )
        n += 1
        producer.flush(5)
        time.sleep(0.2)
        if with_worker and collector.ids:
            return
    msg = "the push path did not deliver a warm-up offer within 180 s (see the service logs)"
    raise RuntimeError(msg)


def _drive(
    producer: Any, world: World, rate: float, seconds: float, with_worker: bool,
    progress: Callable[[str], None],
) -> tuple[int, float]:
    """Produce at ``rate``/s for ``seconds`` in 10 ms ticks; returns (records, elapsed)."""
    what = "positions" if with_worker else "offers"
    start = time.monotonic()
    next_report = start + 5
    tick = 0.01
    per_tick = rate * tick
    owed = 0.0
    produced = 0
    cursor = 0
    n_offer = 0
    while (now := time.monotonic()) - start < seconds:
        owed += per_tick
        ts = now_ms()
        t_s = now - start
        while owed >= 1:
            owed -= 1
            i = cursor % len(world.uids)
            cursor += 1
            uid = world.uids[i]
            if with_worker:
                lat, lon = world.position(i, t_s)
                # The contract's CustomerLocation fields, serialised directly: the bench's own
                # CPU is taken from the services it measures.
                raw = orjson.dumps(
                    {
                        "uid": uid,
                        "store_id": world.store,
                        "latitude": lat,
                        "longitude": lon,
                        "ts": ts,
                        "source": "sim",
                    }
                )
                produce(producer, t.CUSTOMERS_LOCATIONS, raw, key=uid, timestamp_ms=ts)
            else:
                # offers-only: a fixed fraction of the rate becomes offers (about what the
                # worker emits for this world), each unique.
                if cursor % 20:
                    continue
                n_offer += 1
                produce(
                    producer,
                    t.OFFERS,
                    Offer(
                        offer_id=f"o-{n_offer}",
                        uid=uid,
                        store_id=world.store,
                        pid="p",
                        sku=1,
                        title="Deal",
                        discount_pct=10,
                        distance_ft=3,
                        ts=ts,
                        expires_at=ts + 900_000,
                    ),
                )
            produced += 1
        producer.poll(0)
        if now >= next_report:
            next_report = now + 5
            progress(f"{produced:,} {what} sent, about {max(0.0, seconds - (now - start)):,.0f} s left")
        sleep = start + (math.floor((now - start) / tick) + 1) * tick - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    producer.flush(30)
    return produced, time.monotonic() - start
