"""The push sink keeps delivering, each offer once, across a Redis restart, a broker restart
(on its data: offsets and the group are still there) and its own kill -9 and restart as a static
group member (it takes its partitions back at once, not after its old session)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter

import pytest

from bench.processes import Child, wait_http, wait_port
from instore import topics as t
from instore.embedded import free_port, redis_argv
from instore.kafka import ensure_topics, make_producer, produce
from instore.records import Offer, ShopperConsent, now_ms
from mobile_push.local_hub.sse_client import Subscription, request_token
from mobile_push.local_hub.tokens import ApiKey, sign_token_request
from tests.conftest import child_env, make_settings, stop_process

pytestmark = pytest.mark.integration


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_redis(port: int, data_dir) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        redis_argv(port, data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port("127.0.0.1", port)
    return proc


def test_sink_survives_redis_and_broker_restarts(broker_factory, tmp_path):
    broker = broker_factory()
    redis_port, hub_port = free_port(), free_port()
    redis_proc = start_redis(redis_port, tmp_path / "redis")
    settings = make_settings(
        broker.bootstrap, f"redis://127.0.0.1:{redis_port}/0", hub_port=hub_port
    )
    ensure_topics(settings)
    # Static membership with a session far longer than the waits below: a restarted sink that
    # had to wait for its old session to end would deliver nothing in time.
    env = child_env(settings, HUB_PORT=str(hub_port), PUSH_SINK_INSTANCE_ID="sink-under-test",
                    PUSH_SINK_SESSION_TIMEOUT_S="150")
    hub = Child("hub", ["push", "hub"], env, tmp_path / "hub.log").start()
    sink = Child("sink", ["push", "sink"], env, tmp_path / "sink.log").start()
    base = f"http://127.0.0.1:{hub_port}"
    uid = f"r-{uuid.uuid4().hex[:6]}"
    got: list = []
    sub = None
    try:
        wait_http(f"{base}/time", hub)
        tr = sign_token_request(
            ApiKey.parse(settings.ably_key), capability={f"shopper:{uid}": ["subscribe"]}
        )
        sub = Subscription(
            base,
            f"shopper:{uid}",
            request_token(base, tr)["token"],
            lambda m, _t: got.append(m["id"]),
        ).start()
        wait_for(sub.attached.is_set, 10, "the stream")

        consent = make_producer(settings)  # no push without a consent the sink has seen
        produce(consent, t.SHOPPER_CONSENTS,
                ShopperConsent(uid=uid, opted_in=True, channels=["phone"], updated_at=now_ms()))
        consent.flush(10)

        def send(phase: str, n: int = 10) -> set[str]:
            p = make_producer(settings)
            ids = set()
            for i in range(n):
                ts = now_ms()
                o = Offer(
                    offer_id=f"{phase}-{i}-{uid}",
                    uid=uid,
                    store_id="s1",
                    pid="p",
                    sku=1,
                    title="t",
                    discount_pct=5,
                    distance_ft=1,
                    ts=ts,
                    expires_at=ts + 60_000,
                )
                produce(p, t.OFFERS, o)
                ids.add(o.offer_id)
            p.flush(30)
            return ids

        want = send("before")
        wait_for(lambda: want <= set(got), 90, "offers before the restarts")

        stop_process(redis_proc)
        redis_proc = start_redis(redis_port, tmp_path / "redis")
        want |= send("after-redis")
        wait_for(lambda: want <= set(got), 90, "offers after the Redis restart")

        broker.stop()
        broker.start()
        ensure_topics(settings)
        want |= send("after-broker")
        wait_for(lambda: want <= set(got), 120, "offers after the broker restart")
        assert sink.alive, sink.tail()

        sink.kill()  # kill -9: it does not leave the group
        sink.start()
        want |= send("after-sink-kill")
        wait_for(lambda: want <= set(got), 75, "offers after the sink's kill -9 and restart")
        assert sink.alive, sink.tail()
    finally:
        if sub is not None:
            sub.stop()
        sink.stop()
        hub.stop()
        stop_process(redis_proc)
    counts = Counter(got)
    assert set(counts) == want
    assert max(counts.values()) == 1


def test_a_fenced_sink_stops_instead_of_hanging(broker_factory, tmp_path):
    """Another consumer joins the sink's group with the sink's instance id: the broker fences
    the sink (a fatal error for its client, which will never consume again). The sink exits
    non-zero, so its supervisor restarts it, rather than polling a dead client for ever."""
    from confluent_kafka import Consumer

    from instore import groups

    broker = broker_factory()
    redis_port, hub_port = free_port(), free_port()
    redis_proc = start_redis(redis_port, tmp_path / "redis")
    settings = make_settings(broker.bootstrap, f"redis://127.0.0.1:{redis_port}/0",
                             hub_port=hub_port)
    ensure_topics(settings)
    env = child_env(settings, HUB_PORT=str(hub_port), PUSH_SINK_INSTANCE_ID="the-only-sink")
    hub = Child("hub", ["push", "hub"], env, tmp_path / "hub.log").start()
    sink = Child("sink", ["push", "sink"], env, tmp_path / "sink.log").start()
    impostor = None
    try:
        wait_http(f"http://127.0.0.1:{hub_port}/time", hub)
        wait_for(lambda: "assigned" in sink.tail(50), 60, "the sink to join its group")
        impostor = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": groups.PUSH_SINK,
                             "group.instance.id": "the-only-sink", "session.timeout.ms": 15000})
        impostor.subscribe([t.OFFERS.name])

        def sink_exited() -> bool:
            impostor.poll(0.1)
            return not sink.alive

        wait_for(sink_exited, 90, "the fenced sink to exit")
        assert sink.proc is not None and sink.proc.returncode != 0
        assert "Traceback" not in sink.tail(80) and "FENCED" in sink.tail(80).upper(), sink.tail()
    finally:
        if impostor is not None:
            impostor.close()
        sink.stop()
        hub.stop()
        stop_process(redis_proc)
