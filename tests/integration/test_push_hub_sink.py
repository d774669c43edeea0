"""The real `ably` SDK through the real push hub, and the push sink on the embedded broker:
each offer reaches its shopper's channel exactly once, even when the sink is SIGKILLed
mid-stream and restarted."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench.processes import Child, wait_http
from instore import serving
from instore import topics as t
from instore.ably import make_rest
from instore.embedded import free_port
from instore.kafka import ensure_topics, make_consumer, make_producer, produce
from instore.records import (
    KioskInteraction,
    Offer,
    OfferEvent,
    ShopperConsent,
    decode,
    now_ms,
)
from mobile_push.local_hub.sse_client import Subscription, decode_data, request_token
from mobile_push.local_hub.tokens import ApiKey, sign_token_request
from tests.conftest import child_env, make_settings

pytestmark = pytest.mark.integration


def wait_for(cond, timeout: float = 60.0, what: str = "condition", every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(broker_factory, redis_url, tmp_path_factory):
    broker = broker_factory()
    port = free_port()
    settings = make_settings(broker.bootstrap, redis_url, hub_port=port)
    ensure_topics(settings)
    logs = tmp_path_factory.mktemp("push-logs")
    env = child_env(settings, HUB_PORT=str(port))
    hub = Child("hub", ["push", "hub", "--port", str(port)], env, logs / "hub.log").start()
    wait_http(f"http://127.0.0.1:{port}/time", hub)
    yield {
        "settings": settings,
        "env": env,
        "logs": logs,
        "base": f"http://127.0.0.1:{port}",
        "broker": broker,
    }
    hub.stop()


def subscribe(stack, channel: str, got: list, rewind: int = 0) -> Subscription:
    key = ApiKey.parse(stack["settings"].ably_key)
    tr = sign_token_request(key, capability={channel: ["subscribe", "history"]}, client_id="test")
    token = request_token(stack["base"], tr)["token"]
    sub = Subscription(
        stack["base"], channel, token, lambda m, _at: got.append(m), rewind=rewind
    ).start()
    wait_for(sub.attached.is_set, 10, f"stream of {channel} attached")
    return sub


def test_sdk_publishes_through_hub_with_dedupe_and_history(stack):
    from ably.types.message import Message

    channel = f"shopper:{uuid.uuid4().hex[:8]}"
    got: list = []
    sub = subscribe(stack, channel, got)

    async def publish() -> list:
        rest = make_rest(stack["settings"])
        try:
            ch = rest.channels.get(channel)
            await ch.publish(Message(name="offer", data={"n": 1}, id="m-1"))
            await ch.publish(Message(name="offer", data={"n": 1}, id="m-1"))  # redelivery
            await ch.publish(
                messages=[
                    Message(name="offer", data={"n": 2}, id="m-2"),
                    Message(name="offer", data={"n": 3}, id="m-3"),
                ]
            )
            page = await ch.history()
            return [(m.id, m.name, m.data) for m in page.items]
        finally:
            await rest.close()

    history = asyncio.run(publish())
    assert history == [
        ("m-3", "offer", {"n": 3}),
        ("m-2", "offer", {"n": 2}),
        ("m-1", "offer", {"n": 1}),
    ]
    wait_for(lambda: len(got) >= 3, 10, "three messages on the stream")
    sub.stop()
    assert [m["id"] for m in got] == ["m-1", "m-2", "m-3"]
    assert [decode_data(m)["n"] for m in got] == [1, 2, 3]
    # A late subscriber asking for rewind gets the recent history first.
    late: list = []
    sub2 = subscribe(stack, channel, late, rewind=2)
    wait_for(lambda: len(late) >= 2, 10, "rewound messages")
    sub2.stop()
    assert [m["id"] for m in late] == ["m-2", "m-3"]


def _offer(uid: str, pid: str, store: str, n: int) -> Offer:
    ts = now_ms()
    return Offer(
        offer_id=f"{pid}-{uid}-{n}",
        uid=uid,
        store_id=store,
        pid=pid,
        sku=100 + n,
        title=f"Offer {n}",
        discount_pct=10,
        distance_ft=12.5,
        ts=ts,
        expires_at=ts + 900_000,
    )


def _delivered_events(settings, want: set[str], timeout: float = 30.0) -> Counter:
    consumer = make_consumer(settings)
    meta = consumer.list_topics(t.OFFER_EVENTS.name, timeout=10)
    parts = list(meta.topics[t.OFFER_EVENTS.name].partitions)
    consumer.assign([TopicPartition(t.OFFER_EVENTS.name, p, OFFSET_BEGINNING) for p in parts])
    seen: Counter = Counter()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not want <= set(seen):
            for m in consumer.consume(500, 0.5):
                if m.error() is None:
                    ev = decode(OfferEvent, m.value())
                    if ev.event == "delivered":
                        seen[ev.offer_id] += 1
    finally:
        consumer.close()
    return seen


def test_sink_delivers_each_offer_exactly_once_across_sigkill(stack, tmp_path: Path):
    settings, env = stack["settings"], stack["env"]
    run = uuid.uuid4().hex[:6]
    store, kiosk = f"s-{run}", "k1"
    uids = [f"u{i}-{run}" for i in range(4)]
    pid = f"p-{run}"
    got: dict[str, list] = {u: [] for u in uids}
    subs = [subscribe(stack, f"shopper:{u}", got[u]) for u in uids]
    kiosk_got: list = []
    subs.append(subscribe(stack, f"kiosk:{store}:{kiosk}", kiosk_got))

    producer = make_producer(settings)
    for u in uids:  # no push without a consent the sink has seen
        produce(producer, t.SHOPPER_CONSENTS,
                ShopperConsent(uid=u, opted_in=True, channels=["phone", "kiosk"],
                               updated_at=now_ms()))
    produce(
        producer,
        t.KIOSK_INTERACTIONS,
        KioskInteraction(
            store_id=store, kiosk_id=kiosk, uid=uids[0], action="checkin", ts=now_ms()
        ),
    )
    producer.flush(10)
    r = redis.Redis.from_url(settings.redis_address)
    sink = Child("sink", ["push", "sink"], env, stack["logs"] / "sink.log").start()
    wait_for(
        lambda: r.get(serving.checkin(uids[0])) == f"{store}:{kiosk}".encode(),
        60,
        "the sink to record the check-in",
    )

    total = 240
    offers = [_offer(uids[i % len(uids)], pid, store, i) for i in range(total)]
    produced = threading.Event()

    def produce_all() -> None:
        p = make_producer(settings)
        for i, o in enumerate(offers):
            produce(p, t.OFFERS, o)
            if i % 4 == 3:
                p.flush(10)
                time.sleep(0.02)
        # The worker may redeliver: the same offers again must not show twice.
        for o in offers[:40]:
            produce(p, t.OFFERS, o)
        p.flush(10)
        produced.set()

    feeder = threading.Thread(target=produce_all, daemon=True)
    feeder.start()

    def received() -> int:
        return sum(len(v) for v in got.values())

    try:
        wait_for(lambda: received() >= 30, 60, "the first offers")
        sink.kill()  # SIGKILL mid-stream: no commit, no goodbye
        sink = Child("sink", ["push", "sink"], env, stack["logs"] / "sink.log").start()
        feeder.join(60)
        assert produced.is_set()
        wait_for(lambda: received() >= total, 120, f"all {total} offers on the shopper channels")
        ids = [o.offer_id for o in offers]
        events = _delivered_events(settings, set(ids))
        assert set(ids) <= set(events), "every offer has a delivered event"
        # Once the sink has caught up (every delivered event is out), nothing more arrives.
        wait_for(
            lambda: int(r.hget(serving.promo_stats(pid), "delivered") or 0) >= total,
            30,
            "delivered counters",
        )
    finally:
        sink.stop()
        for s in subs:
            s.stop()

    per_id = Counter(m["id"] for msgs in got.values() for m in msgs)
    assert set(per_id) == {o.offer_id for o in offers}
    dupes = {k: v for k, v in per_id.items() if v > 1}
    assert not dupes, f"offers shown more than once: {list(dupes)[:5]}"
    for u in uids:
        assert all(decode_data(m)["uid"] == u and m["name"] == "offer" for m in got[u])
    # Counters count each offer once, however many times it was consumed.
    assert int(r.hget(serving.promo_stats(pid), "delivered")) == total
    assert int(r.hget(serving.store_stats(store), "delivered")) == total
    assert all(r.exists(serving.delivered(o.offer_id)) for o in offers)
    # The kiosk where uids[0] checked in shows that shopper's offers, and only theirs, once each.
    kiosk_ids = Counter(m["id"] for m in kiosk_got)
    assert set(kiosk_ids) == {o.offer_id for o in offers if o.uid == uids[0]}
    assert max(kiosk_ids.values()) == 1


def test_sink_dead_letters_invalid_offers(stack):
    settings, env = stack["settings"], stack["env"]
    producer = make_producer(settings)
    marker = uuid.uuid4().hex
    producer.produce(t.OFFERS.name, key=b"x", value=b'{"offer_id": "' + marker.encode() + b'"}')
    producer.flush(10)
    sink = Child("sink", ["push", "sink"], env, stack["logs"] / "sink-dl.log").start()
    consumer = make_consumer(settings)
    consumer.assign([TopicPartition(t.DEAD_LETTERS.name, 0, OFFSET_BEGINNING)])
    found = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not found:
            for m in consumer.consume(100, 0.5):
                if m.error() is None and marker.encode() in (m.value() or b""):
                    found.append(m.value())
    finally:
        consumer.close()
        sink.stop()
    assert found, "the invalid offer went to dead_letters"
    assert b"invalid Offer" in found[0]


def test_sink_honours_consented_channels_and_opt_out(stack):
    from instore.records import ShopperConsent

    settings, env = stack["settings"], stack["env"]
    run = uuid.uuid4().hex[:6]
    store, kiosk = f"c-{run}", "k9"
    phone_only, opted_out, unknown = f"phone-{run}", f"out-{run}", f"none-{run}"
    got: dict[str, list] = {phone_only: [], opted_out: [], unknown: []}
    kiosk_got: list = []
    subs = [subscribe(stack, f"shopper:{u}", got[u]) for u in got]
    subs.append(subscribe(stack, f"kiosk:{store}:{kiosk}", kiosk_got))
    p = make_producer(settings)
    ts = now_ms()
    produce(
        p,
        t.SHOPPER_CONSENTS,
        ShopperConsent(uid=phone_only, opted_in=True, channels=["phone"], updated_at=ts),
    )
    produce(p, t.SHOPPER_CONSENTS, ShopperConsent(uid=opted_out, opted_in=False, updated_at=ts))
    for u in got:
        produce(
            p,
            t.KIOSK_INTERACTIONS,
            KioskInteraction(store_id=store, kiosk_id=kiosk, uid=u, action="checkin", ts=ts),
        )
    p.flush(10)
    r = redis.Redis.from_url(settings.redis_address)
    sink = Child("sink", ["push", "sink"], env, stack["logs"] / "sink-consent.log").start()
    try:
        wait_for(lambda: r.get(serving.checkin(opted_out)) is not None, 60, "check-ins")
        # Consents and offers are different topics: wait until the sink holds the consents.
        wait_for(
            lambda: (
                r.get(serving.consent_channels(opted_out)) is not None
                and r.get(serving.consent_channels(phone_only)) is not None
            ),
            60,
            "consents",
        )
        for u in got:
            produce(p, t.OFFERS, _offer(u, f"p-{run}", store, 1))
        # A marker offer afterwards shows the sink is past the two above.
        produce(p, t.OFFERS, _offer(phone_only, f"p-{run}", store, 2))
        p.flush(10)
        wait_for(lambda: len(got[phone_only]) >= 2, 60, "the phone-only shopper's offers")
    finally:
        sink.stop()
        for s in subs:
            s.stop()
    assert got[opted_out] == [], "an opted-out shopper gets nothing"
    assert got[unknown] == [], "no consent the sink has seen: no push"
    assert kiosk_got == [], "a phone-only shopper's offers stay off the kiosk"


def test_sink_pushes_nothing_to_an_erased_shopper(stack):
    """Erasure (the consent's tombstone) reaches the sink before an offer made earlier: the offer
    is not pushed, and what the sink keeps is a keyed hash of the uid, not the uid."""
    from instore.records import ShopperConsent

    settings, env = stack["settings"], stack["env"]
    run = uuid.uuid4().hex[:6]
    store = f"e-{run}"
    erased_uid, other = f"gone-{run}", f"here-{run}"
    got: dict[str, list] = {erased_uid: [], other: []}
    subs = [subscribe(stack, f"shopper:{u}", got[u]) for u in got]
    p = make_producer(settings)
    ts = now_ms()
    for u in got:
        produce(p, t.SHOPPER_CONSENTS,
                ShopperConsent(uid=u, opted_in=True, channels=["phone"], updated_at=ts))
    p.flush(10)
    r = redis.Redis.from_url(settings.redis_address)
    marker = serving.erased(serving.pseudonym(settings.shopper_secret, erased_uid))
    sink = Child("sink", ["push", "sink"], env, stack["logs"] / "sink-erased.log").start()
    try:
        wait_for(lambda: r.get(serving.consent_channels(erased_uid)) is not None, 60,
                 "the consent")
        produce(p, t.SHOPPER_CONSENTS, None, key=erased_uid)  # erasure
        p.flush(10)
        wait_for(lambda: r.exists(marker) == 1, 60, "the erasure")
        assert r.get(serving.consent_channels(erased_uid)) is None
        produce(p, t.OFFERS, _offer(erased_uid, f"p-{run}", store, 1))
        produce(p, t.OFFERS, _offer(other, f"p-{run}", store, 2))  # the sink is past it after
        p.flush(10)
        wait_for(lambda: len(got[other]) >= 1, 60, "the other shopper's offer")
    finally:
        sink.stop()
        for s in subs:
            s.stop()
    assert got[erased_uid] == [], "an erased shopper gets nothing"
    assert 0 < r.ttl(marker) <= settings.stream_retention_ms // 1000
