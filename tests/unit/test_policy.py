"""The offer policy: consent, dwell, cooldown, hourly cap, stable offer ids."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from instore.records import NearbyCustomer, Promotion, ShopperConsent
from stream_apps.policy import (
    Near,
    PolicyConfig,
    ShopperState,
    decide,
    decide_position,
    offer_id_for,
)

T0 = 1_767_225_600_000
CFG = PolicyConfig(dwell_s=5, dwell_gap_s=5, cooldown_s=1800, cap_per_hour=3, offer_ttl_s=900)
YES = ShopperConsent(uid="u1", opted_in=True, updated_at=T0)
PROMO = Promotion(pid="q1", sku=1, title="10% off", discount_pct=10)


def row(ts: int, pid: str = "q1", uid: str = "u1") -> NearbyCustomer:
    return NearbyCustomer(uid=uid, store_id="s1", pid=pid, sku=1, segment="c", distance_ft=12.34,
                          latitude=51.5, longitude=-0.12, product_latitude=51.5,
                          product_longitude=-0.12, country="GB", ts=ts)


def run(ts_list: list[int], state: ShopperState | None = None, consent=YES, promo=PROMO,
        pid: str = "q1") -> list[str]:
    state = state or ShopperState()
    return [decide(row(ts, pid), state, consent, promo, CFG)[0] for ts in ts_list]


def test_offer_only_after_dwell() -> None:
    verdicts = run([T0 + i * 500 for i in range(12)])
    assert verdicts[:10] == ["dwelling"] * 10
    assert verdicts[10] == "offer"  # 5.0 s after the first row
    assert verdicts[11] == "cooldown"


def test_a_gap_restarts_the_dwell() -> None:
    verdicts = run([T0, T0 + 3000, T0 + 9000, T0 + 13_000, T0 + 14_000])
    assert verdicts == ["dwelling", "dwelling", "dwelling", "dwelling", "offer"]


def test_no_consent_no_offer_and_no_state() -> None:
    state = ShopperState()
    assert run([T0, T0 + 6000], state, consent=None) == ["no_consent", "no_consent"]
    no = ShopperConsent(uid="u1", opted_in=False, updated_at=T0)
    assert run([T0, T0 + 6000], state, consent=no) == ["no_consent", "no_consent"]
    assert state.near == {} and state.recent == []


def test_withdrawn_or_expired_promotion() -> None:
    assert run([T0], promo=None) == ["withdrawn"]
    expired = Promotion(pid="q1", sku=1, title="t", discount_pct=10, ends_at=T0)
    assert run([T0], promo=expired) == ["inactive"]


def test_cooldown_then_again() -> None:
    state = ShopperState()
    assert run([T0, T0 + 5000], state) == ["dwelling", "offer"]
    later = T0 + 5000 + 1_800_000
    # Back at the shelf: dwell again, still in cooldown one second early, then offered again.
    verdicts = run([later - 6000 + i * 1000 for i in range(7)], state)
    assert verdicts == ["dwelling"] * 5 + ["cooldown", "offer"]


def test_hourly_cap() -> None:
    state = ShopperState()
    verdicts = []
    for k in range(5):
        pid = f"q{k}"
        promo = Promotion(pid=pid, sku=1, title="t", discount_pct=10)
        base = T0 + k * 60_000
        verdicts += [decide(row(ts, pid), state, YES, promo, CFG)[0] for ts in (base, base + 5000)]
    assert verdicts.count("offer") == 3
    assert verdicts[-1] == "cap"
    # An hour after the first offer, the cap frees one slot.
    promo = Promotion(pid="q9", sku=1, title="t", discount_pct=10)
    late = T0 + 5000 + 3_600_000
    assert [decide(row(ts, "q9"), state, YES, promo, CFG)[0] for ts in (late, late + 5000)] == [
        "dwelling", "offer"]


def test_offer_fields_and_stable_id() -> None:
    state = ShopperState()
    decide(row(T0), state, YES, PROMO, CFG)
    verdict, offer = decide(row(T0 + 5000), state, YES, PROMO, CFG)
    assert verdict == "offer" and offer is not None
    assert offer.offer_id == offer_id_for("u1", "q1", T0 + 5000, CFG)
    assert offer.expires_at == T0 + 5000 + 900_000
    assert (offer.title, offer.discount_pct, offer.distance_ft) == ("10% off", 10.0, 12.3)
    # Replaying the same rows from a restored state gives the same id (idempotency key).
    state2 = ShopperState.from_dict(ShopperState().to_dict())
    decide(row(T0), state2, YES, PROMO, CFG)
    assert decide(row(T0 + 5000), state2, YES, PROMO, CFG)[1].offer_id == offer.offer_id
    assert offer_id_for("u2", "q1", T0, CFG) != offer_id_for("u1", "q1", T0, CFG)


def test_state_round_trips_and_prunes() -> None:
    state = ShopperState()
    run([T0, T0 + 5000], state)
    restored = ShopperState.from_dict(state.to_dict())
    assert restored == state
    restored.prune(T0 + 2 * 3_600_000, CFG)
    assert restored.near == {} and restored.last_offer == {} and restored.recent == []


PROMOS = {f"q{i}": Promotion(pid=f"q{i}", sku=i, title=f"{i}% off", discount_pct=10 + i)
          for i in range(4)}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4000), st.lists(st.sampled_from(sorted(PROMOS) + ["gone"]),
                                                          max_size=6)),
                max_size=40),
       st.integers(0, 8), st.integers(1, 3))
def test_decide_position_equals_decide_row_by_row(steps, dwell_s, cap) -> None:
    """The worker's one-pass policy per position makes the same decisions (and offers) as
    ``decide`` applied to each NEARBY row of that position in turn."""
    cfg = PolicyConfig(dwell_s=dwell_s, dwell_gap_s=2, cooldown_s=20, cap_per_hour=cap,
                       offer_ttl_s=60)
    by_row, by_position = ShopperState(), ShopperState()
    ts = T0
    for step, pids in steps:
        ts += step
        hits = [("s1", pid, 7, 3.21, b"") for pid in pids]
        expected_offers, expected = [], Counter()
        for _store, pid, sku, d_ft, _ in hits:
            verdict, offer = decide(Near("u1", "s1", pid, sku, d_ft, ts), by_row, YES,
                                    PROMOS.get(pid), cfg)
            expected[f"policy:{verdict}"] += 1
            if offer is not None:
                expected_offers.append(offer)
        verdicts: dict[str, int] = {}
        offers = decide_position("u1", hits, ts, by_position, PROMOS, cfg, verdicts)
        assert offers == expected_offers
        assert verdicts == dict(expected)
        assert by_position.near == by_row.near
        assert by_position.last_offer == by_row.last_offer


def test_only_an_offer_marks_the_state_for_the_changelog() -> None:
    """An episode start changes the state (pruned in memory) but only an offer must survive a
    restart (the worker writes the table, and so the changelog, only then)."""
    state = ShopperState()
    hit = ("s1", "q1", 1, 12.5, b"")
    assert decide_position("u1", [hit], T0, state, {"q1": PROMO}, CFG, Counter()) == []
    assert (state.changed, state.offered) == (True, False)
    state.changed = False
    assert decide_position("u1", [hit], T0 + 2000, state, {"q1": PROMO}, CFG, Counter()) == []
    assert (state.changed, state.offered) == (False, False)  # the same episode goes on
    offers = decide_position("u1", [hit], T0 + 5000, state, {"q1": PROMO}, CFG, Counter())
    assert len(offers) == 1
    assert state.offered
    restored = ShopperState.from_dict(state.to_dict())  # what a restarted worker reads back
    assert decide_position("u1", [hit], T0 + 9000, restored, {"q1": PROMO}, CFG, Counter()) == []
    assert decide(row(T0 + 9000), ShopperState.from_dict(state.to_dict()), YES, PROMO,
                  CFG)[0] == "cooldown"
