"""The push sink's pure rules: channels, check-ins, batching and which errors retry."""

from __future__ import annotations

import json

from instore.channels import kiosk_channel, shopper_channel
from instore.records import KioskInteraction, Offer
from mobile_push import routing
from mobile_push.connect_config import ably_channel_sink


def offer(n: int, uid: str = "ana", store: str = "s1") -> Offer:
    return Offer(
        offer_id=f"o{n}",
        uid=uid,
        store_id=store,
        pid="p",
        sku=1,
        title="t",
        discount_pct=10,
        distance_ft=1,
        ts=1,
        expires_at=2,
    )


def test_channels():
    assert shopper_channel("ana") == "shopper:ana"
    assert kiosk_channel("s1", "k1") == "kiosk:s1:k1"
    assert routing.parse_checkin(b"s1:k1") == ("s1", "k1")
    assert routing.parse_checkin("store:with:colons:k9") == ("store:with:colons", "k9")
    assert routing.parse_checkin(None) is None
    assert routing.parse_checkin("nocolon") is None


def test_checkin_changes():
    def ev(action, uid="ana"):
        return KioskInteraction(store_id="s1", kiosk_id="k1", uid=uid, action=action, ts=1)

    assert routing.checkin_change(ev("checkin")) == routing.CheckinChange("ana", "set", "s1:k1")
    assert routing.checkin_change(ev("checkout")).op == "clear"
    assert routing.checkin_change(ev("tap")).op == "touch"
    assert routing.checkin_change(ev("view", uid=None)) is None


def test_plan_routes_to_shopper_and_checked_in_kiosk_of_the_same_store():
    offers = [offer(1, "ana"), offer(2, "bob"), offer(3, "ana", store="s2")]
    both = frozenset({"phone", "kiosk"})
    plan = routing.plan(
        offers, {"ana": ("s1", "k1"), "bob": None}, {o.offer_id: 100 for o in offers},
        {"ana": both, "bob": both},
    )
    got = {(ch, tuple(o.offer_id for o in chunk)) for ch, chunk in plan.chunks}
    assert got == {
        ("shopper:ana", ("o1", "o3")),
        ("shopper:bob", ("o2",)),
        ("kiosk:s1:k1", ("o1",)),
    }
    assert plan.oversize == []


def test_plan_splits_big_batches_and_refuses_oversize():
    offers = [offer(i) for i in range(5)]
    sizes = {o.offer_id: 25_000 for o in offers} | {"o4": routing.MAX_MESSAGE_BYTES + 1}
    plan = routing.plan(offers, {}, sizes, {"ana": frozenset({"phone"})})
    assert [o.offer_id for o in plan.oversize] == ["o4"]
    chunks = [[o.offer_id for o in c] for _, c in plan.chunks]
    assert chunks == [["o0", "o1"], ["o2", "o3"]]


def test_permanent_errors():
    assert routing.is_permanent(400, 40009)
    assert routing.is_permanent(403, 40160)
    assert not routing.is_permanent(500, 50000)
    assert not routing.is_permanent(401, 40142)  # the SDK renews tokens; keep the offer
    assert not routing.is_permanent(None, None)


def test_connect_config_matches_the_sink():
    cfg = ably_channel_sink()["config"]
    assert cfg["connector.class"] == "com.ably.kafka.connect.ChannelSinkConnector"
    assert cfg["topics"] == "offers"
    assert cfg["channel"] == "shopper:#{key}"
    assert cfg["message.name"] == "offer"
    assert cfg["errors.tolerance"] == "all"
    assert cfg["errors.deadletterqueue.topic.name"] == "dead_letters"
    assert "${env:" in cfg["client.key"]
    json.dumps(cfg)


def test_plan_honours_consented_channels():
    offers = [offer(1, "ana"), offer(2, "bob"), offer(3, "cy"), offer(4, "dee")]
    checkins = {u: ("s1", "k1") for u in ("ana", "bob", "cy", "dee")}
    consents = {
        "ana": frozenset({"phone"}),
        "bob": frozenset({"kiosk"}),
        "cy": frozenset(),  # opted out since the offer was made
        "dee": None,  # no consent seen by the sink: no push (privacy finding 3)
    }
    plan = routing.plan(offers, checkins, {o.offer_id: 10 for o in offers}, consents)
    got = {(ch, tuple(o.offer_id for o in chunk)) for ch, chunk in plan.chunks}
    assert got == {
        ("shopper:ana", ("o1",)),
        ("kiosk:s1:k1", ("o2",)),
    }
    assert [o.offer_id for o in plan.suppressed] == ["o3", "o4"]
    assert routing.parse_consent_channels(b"kiosk,phone") == {"kiosk", "phone"}
    assert routing.parse_consent_channels("") == frozenset()
    assert routing.parse_consent_channels(None) is None
