"""Pure parts of "bought together": which redemptions form a pair, counting once per shopper and
pair under any order and any redelivery, the pair names, and the API's filter and ranking."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from api.analytics import top_pairs
from instore import serving
from stream_apps.basket import BasketCounter, Redemption, bucket_of, pairs_with

T0 = 1_700_000_040_000  # a minute boundary
HOUR = 3_600_000


def test_pairs_are_same_store_other_sku_within_the_window():
    new = Redemption("s1", 5, T0, "o-new")
    recent = [
        Redemption("s1", 5, T0, "o-new"),  # itself
        Redemption("s1", 5, T0 - 10, "o-again"),  # the same product again: no pair
        Redemption("s1", 7, T0 - HOUR, "o-7"),  # an hour before: pair, complete at T0
        Redemption("s1", 3, T0 + 2 * HOUR, "o-3"),  # arrives out of order, right at the edge
        Redemption("s1", 9, T0 - 2 * HOUR - 1, "o-9"),  # just outside the window
        Redemption("s2", 8, T0, "o-other-store"),
    ]
    assert pairs_with(new, recent, 2 * HOUR) == {"s1:5:7": T0, "s1:3:5": T0 + 2 * HOUR}


def test_a_pair_completes_at_its_earliest_moment():
    new = Redemption("s", 1, T0, "n")
    recent = [Redemption("s", 2, T0 + 5000, "a"), Redemption("s", 2, T0 - 5000, "b")]
    assert pairs_with(new, recent, HOUR) == {"s:1:2": T0}


def test_one_shopper_counts_once_per_pair_and_shoppers_add_up():
    counter = BasketCounter(window_s=7200)
    now = T0 + HOUR
    assert counter.add("ann", Redemption("s", 1, T0, "a1"), now) == []
    assert counter.add("ann", Redemption("s", 2, T0 + 60_000, "a2"), now) == ["s:1:2"]
    assert counter.add("ann", Redemption("s", 2, T0 + 60_000, "a2"), now) == []  # redelivery
    assert counter.add("ann", Redemption("s", 1, T0 + 120_000, "a3"), now) == []  # 2nd offer, same sku
    assert counter.add("bob", Redemption("s", 2, T0, "b1"), now) == []
    assert counter.add("bob", Redemption("s", 1, T0 + 1000, "b2"), now) == ["s:1:2"]
    assert counter.add("bob", Redemption("s", 9, T0 + 3 * HOUR, "b3"), now) == []  # a later visit
    assert counter.counts == Counter({(bucket_of(T0 + 60_000), "s:1:2"): 1,
                                      (bucket_of(T0 + 1000), "s:1:2"): 1})


def test_redemptions_older_than_the_horizon_are_ignored_and_state_is_pruned():
    counter = BasketCounter(window_s=3600, horizon_ms=10 * HOUR)
    counter.add("ann", Redemption("s", 1, T0, "a1"), T0)
    assert counter.add("ann", Redemption("s", 2, T0, "a2"), T0 + 11 * HOUR) == []
    counter.add("ann", Redemption("s", 3, T0 + 11 * HOUR, "a3"), T0 + 11 * HOUR)
    assert set(counter.recent["ann"]) == {Redemption("s", 3, T0 + 11 * HOUR, "a3")}


WINDOW_MS = 1000
events = st.lists(
    st.tuples(
        st.sampled_from(["ann", "bob", "cy"]),
        st.sampled_from(["s1", "s:2"]),
        st.integers(1, 4),
        st.integers(0, 6 * WINDOW_MS),
    ),
    max_size=25,
)


def brute_force(evts: list[tuple[str, str, int, int]]) -> Counter[str]:
    """Shoppers per pair: two redemptions of one shopper, same store, other SKU, close enough."""
    pairs: set[tuple[str, str]] = set()
    for (u1, s1, k1, t1), (u2, s2, k2, t2) in combinations(evts, 2):
        if u1 == u2 and s1 == s2 and k1 != k2 and abs(t1 - t2) <= WINDOW_MS:
            pairs.add((u1, serving.basket_pair(s1, k1, k2)))
    return Counter(pair for _, pair in pairs)


@given(events, st.data())
def test_counts_match_the_definition_under_any_order_and_redelivery(evts, data):
    delivered = list(enumerate(evts))
    delivered += data.draw(st.lists(st.sampled_from(delivered), max_size=10)) if delivered else []
    delivered = data.draw(st.permutations(delivered))
    counter = BasketCounter(window_s=WINDOW_MS / 1000)
    now = T0 + 10 * WINDOW_MS
    for i, (uid, store, sku, ts) in delivered:
        counter.add(uid, Redemption(store, sku, T0 + ts, f"offer-{i}"), now)
    assert counter.totals() == brute_force(evts)


@given(st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True),
       st.integers(0, 2**53), st.integers(0, 2**53))
def test_pair_names_are_order_free_and_parse_back(store_id, a, b):
    member = serving.basket_pair(store_id, a, b)
    assert member == serving.basket_pair(store_id, b, a)
    assert serving.parse_basket_pair(member) == (store_id, min(a, b), max(a, b))


def test_top_pairs_filters_by_store_and_sku_and_ranks_by_shoppers():
    totals = Counter({"s1:1:2": 3, "s1:2:3": 5, "s:2:1:2": 4, "junk": 9, "s1:4:5": 0})
    assert top_pairs(totals) == (3, [("s1", 2, 3, 5), ("s:2", 1, 2, 4), ("s1", 1, 2, 3)])
    assert top_pairs(totals, store_id="s1", sku=2, limit=1) == (2, [("s1", 2, 3, 5)])
    assert top_pairs(totals, sku=1) == (2, [("s:2", 1, 2, 4), ("s1", 1, 2, 3)])
    assert top_pairs(totals, store_id="nowhere") == (0, [])
