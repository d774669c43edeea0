"""`instore demo`: the embedded stack plus simulated shoppers, with a live view of offers.

Starts the stack (or uses one already running on the configured ports), writes a small store
world, opts most shoppers in, checks one shopper in at a kiosk, walks the shoppers in real time
and shows positions/s, NEARBY rows, offers and dead letters as they happen. The summary's
latency is position ts -> offer consumed from the `offers` topic (an upper bound of "produced").
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from instore import topics as t
from instore.embedded import Stack, port_open
from instore.embedded.services import start_stack
from instore.kafka import make_consumer, make_producer, produce
from instore.qr import reachable_from_a_phone, terminal_qr
from instore.records import KioskInteraction, now_ms
from instore.settings import LOOPBACK, Settings
from instore.stats import percentile
from producers.publish import (
    publish_consents,
    publish_positions,
    publish_world,
    wait_for_worker,
)
from producers.shoppers import walk_positions
from producers.world import build_world

DEMO_UID = "shopper-00001"


@dataclass
class CameraFeed:
    """Positions from a camera instead of simulated walks (`instore demo --camera`): the
    catalog where the camera's shoppers walk, the kiosk they check in at, and the feed itself
    (``run(settings, stop)`` produces `customers_locations` until ``stop`` is set)."""

    products: list[Any]
    promotions: list[Any]
    store_id: str
    kiosk_id: str
    run: Callable[[Settings, threading.Event], Any]


@dataclass
class DemoStats:
    positions: int = 0
    nearby: int = 0
    offers: int = 0
    dead_letters: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    latest: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=8))
    started: float = field(default_factory=time.monotonic)

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "positions": self.positions, "nearby": self.nearby, "offers": self.offers,
            "dead_letters": self.dead_letters, "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "seconds": round(time.monotonic() - self.started, 1),
        }


def _watch(settings: Settings, stats: DemoStats, stop: threading.Event) -> None:
    consumer = make_consumer(settings, None, **{"fetch.wait.max.ms": 10})
    md = consumer.list_topics(timeout=10)
    names = (t.NEARBY_CUSTOMERS.name, t.OFFERS.name, t.DEAD_LETTERS.name)
    consumer.assign([TopicPartition(n, p, OFFSET_END) for n in names
                     for p in md.topics[n].partitions])
    try:
        while not stop.is_set():
            for msg in consumer.consume(5000, 0.1):
                if msg.error():
                    continue
                topic = msg.topic()
                if topic == t.NEARBY_CUSTOMERS.name:
                    stats.nearby += 1
                elif topic == t.OFFERS.name:
                    value = msg.value()
                    if value is None:
                        continue  # not an offer (a null value would stop this watcher)
                    offer = orjson.loads(value)
                    stats.offers += 1
                    stats.latencies_ms.append(now_ms() - offer["ts"])
                    stats.latest.appendleft(offer)
                else:
                    stats.dead_letters += 1
    finally:
        consumer.close()


def _view(stats: DemoStats, urls: list[str]) -> Group:
    elapsed = max(0.1, time.monotonic() - stats.started)
    head = Table.grid(padding=(0, 2))
    for label, value in (
        ("positions", f"{stats.positions:,} ({stats.positions / elapsed:,.0f}/s)"),
        ("nearby rows", f"{stats.nearby:,}"), ("offers", f"{stats.offers:,}"),
        ("dead letters", f"{stats.dead_letters:,}"),
        ("position -> offer p50 / p99", f"{stats.percentile(0.5)} / {stats.percentile(0.99)} ms"),
    ):
        head.add_row(f"[bold]{label}[/]", value)
    offers = Table("shopper", "store", "offer", "distance", title="latest offers")
    for o in stats.latest:
        offers.add_row(o["uid"], o["store_id"], o["title"], f"{o['distance_ft']:.0f} ft")
    return Group(head, offers, *[f"[dim]{u}[/]" for u in urls])


def phone_url(settings: Settings) -> str:
    return f"{settings.public_scheme()}://{settings.host}:{settings.hub_port}/phone?uid={DEMO_UID}"


def page_urls(settings: Settings, store_id: str = "store-001", kiosk_id: str = "kiosk-1") -> list[str]:
    base = f"{settings.public_scheme()}://{settings.host}"
    return [
        f"phone page:  {phone_url(settings)} (opt in there)",
        f"kiosk page:  {base}:{settings.hub_port}/kiosk?store={store_id}&kiosk={kiosk_id}"
        f"&key={settings.api_key('kiosk') or '<API_KEY_KIOSK>'}",
        f"dashboard:   {base}:{settings.api_port}/dashboard (key: dev-marketer-key)",
        f"lineage:     {base}:{settings.api_port}/lineage/view (key: dev-analyst-key)",
        f"ops view:    {base}:{settings.api_port}/ops (key: dev-ops-key)",
        f"API docs:    {base}:{settings.api_port}/docs",
    ]


def run_demo(settings: Settings, *, seconds: float, shoppers: int, seed: int,
             console: Console, live: bool = True, data_dir: Path | None = None,
             on_event: Callable[[str], None] | None = None,
             camera: CameraFeed | None = None, keep_running: bool = False) -> dict[str, Any]:
    stack, scratch = _stack_for_demo(settings, console, data_dir, on_event)
    stats = DemoStats()
    stop = threading.Event()
    try:
        producer = make_producer(settings)
        if camera is None:
            world = build_world(stores=2, products=400, promoted=12, seed=seed)
            store = _Store(world.products, world.promotions, "store-001", "kiosk-1",
                           _opted_in(shoppers))
        else:
            # the camera's other shoppers are anonymous tracks: no offers
            store = _Store(camera.products, camera.promotions, camera.store_id, camera.kiosk_id,
                           [DEMO_UID])
        _open_store(settings, producer, console, store)
        watcher = threading.Thread(target=_watch, args=(settings, stats, stop), daemon=True)
        watcher.start()
        time.sleep(0.5)
        deadline = time.monotonic() + seconds
        if camera is None:
            sender = _walking_shoppers(producer, world, shoppers, seed, stats,
                                       lambda: stop.is_set() or time.monotonic() > deadline)
        else:
            sender = _camera_feed(settings, camera, seconds, stats)
        sender.start()
        urls = page_urls(settings, store.store_id, store.kiosk_id)
        _show(settings, console, stats, sender, urls, live)
        if keep_running and stack is not None:
            _hold(console, urls)
    finally:
        stop.set()
        if stack is not None:
            stack.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return stats.summary()


def _stack_for_demo(settings: Settings, console: Console, data_dir: Path | None,
                    on_event: Callable[[str], None] | None) -> tuple[Stack | None, Path | None]:
    """The stack already running on the configured ports (None), or one started for the demo;
    and the scratch folder to remove afterwards (None when ``data_dir`` was given)."""
    if settings.embedded_kafka and port_open(LOOPBACK, settings.broker_port):
        console.print(f"[cyan]demo[/] using the stack already running on port {settings.broker_port}")
        return None, None
    # The broker keeps its data: a demo on a kept data dir would find the last run's
    # cooldowns and delivered offers, and show none. Each demo gets a fresh store.
    scratch = None
    store_dir = data_dir
    if store_dir is None:
        store_dir = scratch = Path(tempfile.mkdtemp(prefix="instore-demo-"))
    return start_stack(settings, store_dir, on_event=on_event), scratch


@dataclass
class _Store:
    """The demo's store: its catalog, the kiosk the demo shopper checks in at, who opted in."""

    products: list[Any]
    promotions: list[Any]
    store_id: str
    kiosk_id: str
    opted: list[str]


def _opted_in(shoppers: int) -> list[str]:
    """4 in 5 opt in; the first shopper is yours: opt in on the phone page to see offers."""
    uids = [f"shopper-{i + 1:05d}" for i in range(shoppers)]
    return [u for i, u in enumerate(uids) if i % 5 != 4 and u != DEMO_UID]


def _open_store(settings: Settings, producer: Any, console: Console, store: _Store) -> None:
    """The catalog and the consents written, the worker ready (or not, said), the demo shopper
    checked in at the kiosk."""
    publish_world(producer, store.products, store.promotions)
    publish_consents(producer, store.opted)
    promoted = next(p for p in store.products if p.sku == store.promotions[0].sku)
    console.print("[cyan]demo[/] waiting for the Faust worker to join and load the catalog")
    if not wait_for_worker(settings, promoted):
        console.print("[yellow]demo[/] the worker has not answered yet; walking anyway")
    produce(producer, t.KIOSK_INTERACTIONS, KioskInteraction(
        store_id=store.store_id, kiosk_id=store.kiosk_id, uid=DEMO_UID, action="checkin",
        ts=now_ms()))
    producer.flush(10)


def _walking_shoppers(producer: Any, world: Any, shoppers: int, seed: int, stats: DemoStats,
                      stop: Callable[[], bool]) -> threading.Thread:
    """Simulated shoppers walking in real time until ``stop()``."""

    def sent(_pos: object) -> None:
        stats.positions += 1

    walks = walk_positions(world, shoppers=shoppers, seed=seed, hz=2.0, stagger_s=5.0,
                           visits=20, start_anywhere=True)
    return threading.Thread(target=publish_positions, args=(producer, walks), kwargs={
        "realtime": True, "stop": stop, "on_sent": sent}, daemon=True)


def _camera_feed(settings: Settings, camera: CameraFeed, seconds: float,
                 stats: DemoStats) -> threading.Thread:
    """The camera's feed for ``seconds``; its count of positions when it ends."""
    feed_stop = threading.Event()

    def run_camera() -> None:
        timer = threading.Timer(seconds, feed_stop.set)
        timer.start()
        try:
            result = camera.run(settings, feed_stop)
            stats.positions = int(getattr(result, "positions", 0) or 0)
        finally:
            timer.cancel()

    return threading.Thread(target=run_camera, daemon=True)


def _show(settings: Settings, console: Console, stats: DemoStats, sender: threading.Thread,
          urls: list[str], live: bool) -> None:
    """The pages' addresses (a QR code when a phone can reach them) and, while the shoppers
    walk, the live view (or, without it, the figures once they are done)."""
    if reachable_from_a_phone(settings.host):  # a phone on the same network: scan this
        console.print("phone page (scan with your phone's camera):")
        console.print(terminal_qr(phone_url(settings)), highlight=False, soft_wrap=True)
    if not live:  # the live view shows them; without it they are printed once
        for url in urls:
            console.print(url, soft_wrap=True)
    if live:
        with Live(_view(stats, urls), console=console, refresh_per_second=4) as view:
            while sender.is_alive():
                view.update(_view(stats, urls))
                time.sleep(0.25)
            _settle(stats, view, urls)
    else:
        sender.join()
        _settle(stats, None, urls)


def _hold(console: Console, urls: list[str]) -> None:
    """Keep the stack up after the walk until Ctrl-C (or SIGTERM), for trying the pages."""
    console.print("[cyan]demo[/] the walk is over; the stack stays up for the pages below "
                  "until Ctrl-C")
    for url in urls:
        console.print(url, soft_wrap=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(1)


def _settle(stats: DemoStats, view: Live | None, urls: list[str]) -> None:
    """Let the last offers come out (the pipeline drains within a few seconds)."""
    last = (stats.nearby, stats.offers)
    quiet_since = time.monotonic()
    end = time.monotonic() + 10
    while time.monotonic() < end and time.monotonic() - quiet_since < 2:
        time.sleep(0.25)
        now = (stats.nearby, stats.offers)
        if now != last:
            last, quiet_since = now, time.monotonic()
        if view is not None:
            with contextlib.suppress(Exception):
                view.update(_view(stats, urls))
