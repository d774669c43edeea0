"""Edge box against the real broker: the bounded buffer through an outage, and a camera
shopper who checks in at a kiosk and stops near a promoted product -> the Faust worker's
NEARBY_CUSTOMERS row carries their uid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from edge.pipeline import EdgeProcessor, run_pipeline
from edge.producer import LocationSink
from edge.scene import SHELF_SPOT_OFFSET, checkin_scene
from edge.sources import DepthFrame, SyntheticSource
from instore import records as r
from instore import topics as t
from instore.embedded import free_port
from instore.kafka import ensure_topics, make_consumer, make_producer, produce
from tests.conftest import ROOT, child_env, make_settings

pytestmark = pytest.mark.integration


def _read_all(settings, topic: t.Topic, until: Callable[[list], bool], timeout_s: float
              ) -> list:
    """Read a topic from the beginning until ``until(values)`` or the timeout."""
    consumer = make_consumer(settings)
    try:
        md = consumer.list_topics(topic.name, timeout=10)
        parts = sorted(md.topics[topic.name].partitions)
        consumer.assign([TopicPartition(topic.name, p, OFFSET_BEGINNING) for p in parts])
        values: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None and msg.value() is not None:
                    values.append(r.decode(topic.record, msg.value()))
            if until(values):
                break
        return values
    finally:
        consumer.close()


def _loc(i: int) -> r.CustomerLocation:
    return r.CustomerLocation(uid=f"anon-s-{i % 7}", store_id="s", latitude=51.5, longitude=-0.1,
                              ts=1_767_225_600_000 + i, source="camera", accuracy_m=0.2)


def test_positions_buffer_through_a_broker_outage_and_drop_the_oldest(broker_factory) -> None:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, "redis://127.0.0.1:9/0")
    ensure_topics(settings, [t.CUSTOMERS_LOCATIONS])
    sink = LocationSink(settings, max_buffer=50, max_in_flight=10, message_timeout_ms=3000)

    def invariant() -> None:
        s = sink.stats
        assert s.offered == s.delivered + s.dropped + sink.buffered + sink.in_flight

    for i in range(20):
        sink.offer(_loc(i))
        sink.pump()
    deadline = time.monotonic() + 30
    while sink.stats.delivered < 20 and time.monotonic() < deadline:
        sink.pump(0.05)
    assert sink.stats.delivered == 20 and sink.stats.dropped == 0

    broker.stop()
    for i in range(100, 200):  # 100 positions while the broker is down
        sink.offer(_loc(i))
        sink.pump(0.01)
        invariant()
    assert sink.buffered <= 50 and sink.in_flight <= 10
    assert sink.stats.dropped >= 100 - 60
    invariant()

    broker.start()  # the broker keeps its data: the first 20 are still there
    stats = sink.close(timeout_s=60)
    assert sink.buffered == 0 and sink.in_flight == 0
    assert stats.offered == stats.delivered + stats.dropped
    everything = _read_all(settings, t.CUSTOMERS_LOCATIONS,
                           lambda v: len(v) >= stats.delivered, timeout_s=30)
    all_ts = [v.ts - 1_767_225_600_000 for v in everything]
    assert sorted(x for x in all_ts if x < 100) == list(range(20))
    ts = sorted(x for x in all_ts if x >= 100)
    assert len(ts) == stats.delivered - 20
    assert set(ts) <= set(range(100, 200))
    assert 199 in ts  # the newest survive; the oldest were dropped
    assert len(set(range(100, 200)) - set(ts)) <= stats.dropped


def _stop_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_checked_in_camera_shopper_near_a_promotion_gets_a_nearby_row(
        broker_factory, redis_url: str, tmp_path: Path) -> None:
    if not (ROOT / "stream_apps" / "app.py").exists():
        pytest.skip("the Faust worker (stream_apps/app.py) is not there yet")
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    ensure_topics(settings)
    scene = checkin_scene("640x480", seconds=70.0, fps=15.0)
    cx, cy = scene.pose.position[0], scene.pose.position[1]
    spot = (cx + SHELF_SPOT_OFFSET[0], cy + SHELF_SPOT_OFFSET[1])
    # the promoted product sits on the shelf face 0.6 m from where the shopper stops
    plat, plon = scene.anchor.to_latlon(spot[0] + 0.6, spot[1])
    producer = make_producer(settings)
    sku = 4242
    pid = f"promo-edge-{uuid.uuid4().hex[:6]}"
    produce(producer, t.STORES_PRODUCTS,
            r.StoreProduct(sku=sku, store_id=scene.store_id, segment="coffee", name="Beans",
                           latitude=plat, longitude=plon, country="GB"))
    produce(producer, t.PRODUCTS_PROMOTIONS,
            r.Promotion(pid=pid, sku=sku, title="20% off beans", discount_pct=20, radius_ft=10))
    producer.flush(10)

    # faust's `worker` command serves its web view even with web_enabled=False: give it a free
    # loopback port so it does not collide with other workers on this machine
    data_dir = tmp_path / "data"
    (data_dir / "faust").mkdir(parents=True)
    env = child_env(settings, INSTORE_APP_ID=f"edge-test-{uuid.uuid4().hex[:8]}", DWELL_S="0",
                    WEB_PORT=str(free_port()), WEB_BIND="127.0.0.1", INSTORE_DATA_DIR=str(data_dir))
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "instore", "worker", "--loglevel", "warn"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                  start_new_session=True)
    uid = f"shopper-{uuid.uuid4().hex[:8]}"
    kiosk_xy = np.array(scene.kiosks["k1"])
    checked_in = threading.Event()
    stop = threading.Event()
    kiosk_producer = make_producer(settings)

    def on_frame(_frame: DepthFrame | None, proc: EdgeProcessor) -> None:
        if checked_in.is_set():
            return
        for tr in proc.tracker.confirmed():
            if np.hypot(*(np.array(proc.store_xy(tr)) - kiosk_xy)) < 0.6:
                produce(kiosk_producer, t.KIOSK_INTERACTIONS,
                        r.KioskInteraction(store_id=scene.store_id, kiosk_id="k1", uid=uid,
                                           action="checkin", ts=r.now_ms()))
                kiosk_producer.flush(5)
                checked_in.set()
                return

    result: dict = {}

    def _run() -> None:
        result["stats"] = run_pipeline(settings, SyntheticSource(scene, real_time=True), stop,
                                       on_frame=on_frame)

    runner = threading.Thread(target=_run, daemon=True)
    runner.start()
    try:
        rows = _read_all(settings, t.NEARBY_CUSTOMERS,
                         lambda v: any(x.uid == uid and x.pid == pid for x in v), timeout_s=90)
    finally:
        stop.set()
        runner.join(30)
        _stop_proc(worker)
    assert checked_in.is_set(), "the shopper was never tracked at the kiosk"
    stats = result["stats"]
    assert stats.checkins["bound"] >= 1, stats.checkins
    mine = [x for x in rows if x.uid == uid and x.pid == pid]
    assert mine, f"no NEARBY_CUSTOMERS row for the checked-in shopper; worker log:\n" \
                 f"{log_path.read_text()[-3000:]}"
    assert mine[0].store_id == scene.store_id and mine[0].sku == sku
    assert mine[0].distance_ft < 10.0
    # positions left the box with the uid only after the check-in; the rest are anonymous
    positions = _read_all(settings, t.CUSTOMERS_LOCATIONS, lambda v: False, timeout_s=3)
    assert all(p.source == "camera" for p in positions)
    others = {p.uid for p in positions if p.uid != uid}
    assert others and all(o.startswith(f"anon-{scene.store_id}-") for o in others)
