"""The worker's core on plain lists of records (no broker, no Faust): what a batch of positions
derives, how the policy state carries across batches, restarts and erasure, and that the
result does not depend on how the stream is cut into batches."""

from __future__ import annotations

from typing import NamedTuple

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from instore import topics as t
from instore.geo import LocalFrame
from instore.proximity import ProximityState
from instore.records import Promotion, ShopperConsent, StoreProduct
from stream_apps.analytics import DwellTracker
from stream_apps.policy import PolicyConfig
from stream_apps.processor import PRUNE_AT, PolicyProcessor, ProximityProcessor, Shoppers

T0 = 1_767_225_600_000
FRAME = LocalFrame(51.5, -0.12)
CFG = PolicyConfig(dwell_s=5, dwell_gap_s=5, cooldown_s=1800, cap_per_hour=3, offer_ttl_s=900)


class Msg(NamedTuple):
    value: bytes | None
    partition: int = 0
    offset: int = 0
    timestamp: float = T0 / 1000


def catalog() -> ProximityState:
    state = ProximityState()
    for sku, x in ((1, 0.0), (2, 40.0)):
        lat, lon = FRAME.to_latlon(x, 0.0)
        state.upsert_product(StoreProduct(sku=sku, store_id="s1", segment="coffee", name=f"p{sku}",
                                          latitude=lat, longitude=lon, country="GB"))
    state.upsert_promotion(Promotion(pid="q1", sku=1, title="10% off", discount_pct=10,
                                     radius_ft=30))
    return state


def position(uid: str, x: float, ts: int, store: str | None = "s1") -> bytes:
    lat, lon = FRAME.to_latlon(x, 1.0)
    return orjson.dumps({"uid": uid, "store_id": store, "latitude": lat, "longitude": lon,
                         "country": "GB", "ts": ts})


def walk(uid: str, seconds: int, x: float = 0.0, start: int = T0) -> list[bytes]:
    """A shopper standing at ``x`` metres for ``seconds``, a position every 500 ms."""
    return [position(uid, x, start + i * 500) for i in range(seconds * 2)]


def msgs(values: list[bytes], partition: int = 0) -> list[Msg]:
    return [Msg(v, partition, i) for i, v in enumerate(values)]


def consents(*uids: str) -> dict[str, ShopperConsent]:
    return {u: ShopperConsent(uid=u, opted_in=True, updated_at=T0) for u in uids}


def processor(state: ProximityState, who: dict[str, ShopperConsent], table: dict | None = None,
              dwell: bool = True) -> ProximityProcessor:
    shoppers = Shoppers({} if table is None else table, who, CFG)
    return ProximityProcessor(state, who, shoppers, DwellTracker(CFG.dwell_gap_s) if dwell else None)


def test_a_dwelling_shopper_gets_rows_then_one_offer() -> None:
    who = consents("u1")
    table: dict = {}
    out = processor(catalog(), who, table).process(msgs(walk("u1", 8)))
    assert len(out.rows) == 16 and all(key == b"u1" for key, _, _ in out.rows)
    row = orjson.loads(out.rows[0][1][0][4])
    assert (row["uid"], row["pid"], row["sku"], row["store_id"]) == ("u1", "q1", 1, "s1")
    assert [(o.uid, o.pid) for o in out.offers] == [("u1", "q1")]
    assert out.offers[0].ts == T0 + 5000  # the first position 5 s into the episode
    assert out.counts["positions"] == 16 and out.counts["nearby"] == 16
    assert out.counts["offers"] == 1 and out.counts["policy:offer"] == 1
    assert out.counts["policy:dwelling"] == 10
    assert out.per_promo == {("q1", "s1"): 16}
    assert sum(out.dwell.values()) == 7.5  # 15 gaps of 0.5 s
    assert len(out.live) == 16 and out.live[0][:2] == ("u1", "s1")
    assert out.last_offsets == {0: 15}
    assert "u1" in table  # the cooldown survives a restart
    assert out.dead_letters == []


def test_bad_records_are_dead_lettered_and_the_batch_goes_on() -> None:
    good = walk("u1", 1)
    batch = [Msg(b"{not json", 3, 7), Msg(good[0], 3, 8), Msg(position("u1", 0, T0, "nowhere"), 3, 9),
             Msg(position("u1", 5000, T0, None), 3, 10), Msg(good[1], 3, 11), Msg(None, 3, 12)]
    out = processor(catalog(), consents("u1")).process(batch)
    dead = [(d.source_topic, d.partition, d.offset, d.error.split(":")[0]) for d in out.dead_letters]
    assert dead == [(t.CUSTOMERS_LOCATIONS.name, 3, 7, "invalid JSON"),
                    (t.CUSTOMERS_LOCATIONS.name, 3, 9, "unknown store 'nowhere'"),
                    (t.CUSTOMERS_LOCATIONS.name, 3, 12, dead[-1][3])]
    assert out.dead_letters[0].raw == "{not json"
    # no store and outside every geofence: not an error, just not in a store
    assert out.counts["outside_stores"] == 1
    assert out.counts["positions"] == 2 and len(out.rows) == 2
    assert out.last_offsets == {3: 12}


def test_without_consent_rows_but_no_offer_and_not_on_the_live_map() -> None:
    who = {"u1": ShopperConsent(uid="u1", opted_in=False, updated_at=T0)}
    table: dict = {}
    out = processor(catalog(), who, table).process(msgs(walk("u1", 8) + walk("anon", 8)))
    assert len(out.rows) == 32 and out.offers == [] and out.live == []
    assert out.counts["policy:no_consent"] == 32
    assert table == {}


def test_erasure_drops_the_kept_state() -> None:
    who = consents("u1")
    table: dict = {}
    proc = processor(catalog(), who, table)
    proc.process(msgs(walk("u1", 8)))
    assert "u1" in table and "u1" in proc.shoppers.live  # type: ignore[union-attr]
    del who["u1"]  # the consent tombstone
    out = proc.process(msgs(walk("u1", 2, start=T0 + 10_000)))
    assert out.offers == [] and out.live == []
    assert table == {} and proc.shoppers.live == {}  # type: ignore[union-attr]


def test_a_restart_replaying_the_batch_makes_no_second_offer() -> None:
    """At-least-once: the batch is handled again by a fresh worker over the same table."""
    who = consents("u1")
    table: dict = {}
    first = processor(catalog(), who, table).process(msgs(walk("u1", 8)))
    again = processor(catalog(), who, table).process(msgs(walk("u1", 8)))
    assert len(first.offers) == 1 and again.offers == []
    assert again.counts["policy:cooldown"] > 0


def test_a_rebalance_forgets_episodes_but_not_cooldowns() -> None:
    who = consents("u1", "u2")
    proc = processor(catalog(), who)
    proc.process(msgs(walk("u2", 3)), generation=1)  # u2 3 s into an episode
    assert "u2" in proc.shoppers.live  # type: ignore[union-attr]
    out = proc.process(msgs(walk("u2", 3, start=T0 + 3000)), generation=2)
    # the episode started again in generation 2: 3 s more is not enough to dwell
    assert out.offers == [] and out.counts["policy:dwelling"] == 6


def test_the_shopper_state_is_pruned_when_idle_or_erased() -> None:
    who = consents("u1", "u2")
    proc = processor(catalog(), who)
    proc.process(msgs(walk("u1", 2) + walk("u2", 2, start=T0 + 600_000)))
    shoppers = proc.shoppers
    assert shoppers is not None and set(shoppers.live) == {"u1", "u2"}
    shoppers.prune()
    assert set(shoppers.live) == {"u2"}  # u1 not seen for ten minutes
    del who["u2"]
    shoppers.prune()
    assert shoppers.live == {}


def test_ksqldb_rows_through_the_policy_processor_make_the_same_offers() -> None:
    """The topic-reading policy agent (rows from ksqlDB) decides as the inline path does."""
    who = consents("u1", "u2")
    values = walk("u1", 8) + walk("u2", 7, x=1.0)
    inline = processor(catalog(), who).process(msgs(values))
    rows = [hit[4] for _, hits, _ in inline.rows for hit in hits] + [b"[]"]
    out = PolicyProcessor(catalog(), Shoppers({}, who, CFG)).process(msgs(rows, partition=2))
    assert [o.offer_id for o in out.offers] == [o.offer_id for o in inline.offers]
    assert len(out.offers) == 2
    assert out.per_promo == inline.per_promo
    assert [d.offset for d in out.dead_letters] == [len(rows) - 1]
    assert out.counts["nearby"] == len(rows) - 1


def test_naive_matching_derives_what_the_index_does() -> None:
    who = consents("u1")
    values = msgs(walk("u1", 8))
    indexed = processor(catalog(), who).process(values)
    naive_proc = processor(catalog(), who)
    naive_proc.naive = True
    naive_proc.match = naive_proc.state.match_hits_naive
    naive = naive_proc.process(values)
    assert [o.offer_id for o in naive.offers] == [o.offer_id for o in indexed.offers]
    assert naive.dwell == indexed.dwell and naive.per_promo == indexed.per_promo


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=59), max_size=6, unique=True))
def test_how_the_stream_is_cut_into_batches_does_not_matter(cuts: list[int]) -> None:
    who = consents("u1", "u2", "u3")
    values = msgs(sorted(walk("u1", 10) + walk("u2", 10, x=40.0) + walk("u3", 10, x=2.0),
                         key=lambda v: orjson.loads(v)["ts"]))
    whole = processor(catalog(), who).process(values)
    proc = processor(catalog(), who)
    offers, rows, dwell = [], [], {}
    bounds = [0, *sorted(cuts), len(values)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        out = proc.process(values[lo:hi])
        offers += [o.offer_id for o in out.offers]
        rows += [hit[4] for _, hits, _ in out.rows for hit in hits]
        for k, v in out.dwell.items():
            dwell[k] = dwell.get(k, 0.0) + v
    assert offers == [o.offer_id for o in whole.offers] and len(offers) == 2
    assert rows == [hit[4] for _, hits, _ in whole.rows for hit in hits]
    assert dwell == whole.dwell


def test_a_shopper_passing_many_promotions_keeps_a_bounded_state() -> None:
    """Episodes past the dwell gap are pruned once a shopper holds more than PRUNE_AT (not at
    every new episode), and what the table keeps after an offer is pruned at once."""
    state = ProximityState()
    for sku in range(1, 201):
        lat, lon = FRAME.to_latlon(sku * 10.0, 0.0)
        state.upsert_product(StoreProduct(sku=sku, store_id="s1", segment="aisle", name=f"p{sku}",
                                          latitude=lat, longitude=lon, country="GB"))
        state.upsert_promotion(Promotion(pid=f"q{sku}", sku=sku, title="5% off",
                                         discount_pct=5, radius_ft=25))
    table: dict[str, object] = {}
    shoppers = Shoppers(table, consents("u1"), CFG)
    proc = ProximityProcessor(state, shoppers.consents, shoppers, None)
    # a metre a second along the aisle: a new promotion every 10 s, each left behind
    walked = [position("u1", i * 1.0, T0 + i * 1000) for i in range(5, 2000)]
    for lo in range(0, len(walked), 50):
        proc.process(msgs(walked[lo:lo + 50]))
        assert len(shoppers.live["u1"].near) <= PRUNE_AT + 50
    kept = table["u1"]
    assert isinstance(kept, dict) and len(kept["near"]) <= 2  # pruned before it was kept
