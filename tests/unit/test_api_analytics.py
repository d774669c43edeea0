"""Pure parts of the analytics: dwell accounting, minute buckets, the top-10 % cut; tokens."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.analytics import top_share
from instore import shopper_tokens as tokens
from stream_apps.analytics import DwellTracker, bucket_of

T0 = 1_700_000_040_000  # a minute boundary


def test_dwell_adds_gaps_up_to_the_limit_and_once_per_moment():
    tracker = DwellTracker(gap_s=5)
    out: Counter = Counter()
    for ts in (T0, T0 + 1000, T0 + 2000, T0 + 2000, T0 + 9000, T0 + 10_000):
        tracker.add("u1", "s1", 42, ts, out)
    # 1 + 1 (the repeat of T0+2000 counts nothing), 7 s gap breaks the episode, then 1
    assert out == Counter({(bucket_of(T0), "s1:42"): 3.0})


def test_dwell_is_per_shopper_and_product():
    tracker = DwellTracker(gap_s=5)
    out: Counter = Counter()
    for uid, sku in (("a", 1), ("b", 1), ("a", 2)):
        tracker.add(uid, "s", sku, T0, out)
        tracker.add(uid, "s", sku, T0 + 2000, out)
    assert out[(bucket_of(T0), "s:1")] == 4.0 and out[(bucket_of(T0), "s:2")] == 2.0


def test_buckets_are_minutes():
    assert bucket_of(T0) + 1 == bucket_of(T0 + 60_000) and bucket_of(T0) == bucket_of(T0 + 59_999)


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 1e6), max_size=60))
def test_top_share_is_the_best_tenth(values):
    totals = Counter(values)
    top = top_share(totals)
    positive = [v for v in totals.values() if v > 0]
    if not positive:
        assert top == []
        return
    assert len(top) == max(1, -(-len(positive) // 10))
    assert min(v for _, v in top) >= max(sorted(positive, reverse=True)[len(top) :] or [0])


def test_shopper_tokens_are_scoped_and_expire():
    secret = b"s3cret"
    tok = tokens.issue(secret, "shopper.with.dots", ttl_s=60, now_s=1000)
    assert tokens.verify(secret, tok, now_s=1030) == "shopper.with.dots"
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(secret, tok, now_s=2000)
    with pytest.raises(tokens.TokenError, match="invalid"):
        tokens.verify(b"other", tok, now_s=1030)
    forged = tok.replace("shopper.with.dots", "someone-else", 1)
    with pytest.raises(tokens.TokenError):
        tokens.verify(secret, forged, now_s=1030)
    for junk in ("", "abc", "a.b", "u.notanumber.sig", "u.1.sïg"):
        with pytest.raises(tokens.TokenError):
            tokens.verify(secret, junk, now_s=1030)


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["s1", "s2"]),
                          st.lists(st.integers(1, 4), max_size=5), st.integers(0, 8000)),
                max_size=40))
def test_dwell_by_position_equals_a_plain_reference(steps):
    """The worker's per-position dwell accounting equals the obvious one: per (shopper, store,
    product), the gap since the last row when at most ``gap_s``; a moment counts once."""
    tracker = DwellTracker(gap_s=5)
    got: Counter = Counter()
    want: Counter = Counter()
    last: dict[tuple[str, str, int], int] = {}
    ts = T0
    for uid, store, skus, step in steps:
        ts += step
        tracker.add_position(uid, store, skus, ts, got)
        for sku in skus:
            prev = last.get((uid, store, sku))
            if prev is not None and ts <= prev:
                continue
            last[(uid, store, sku)] = ts
            if prev is not None and ts - prev <= 5000:
                want[(bucket_of(ts), f"{store}:{sku}")] += (ts - prev) / 1000.0
    assert got == want
