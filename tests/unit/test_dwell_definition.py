"""One definition of dwell in both engines: the dashboard's (stream_apps/analytics.py
``DwellTracker``, run by the Faust worker) and ksqlDB's ``PRODUCT_DWELL``
(ksql/migrations/V000004__analyst_views.sql, run here on the in-memory engine with every
migration applied) give the same dwell seconds per product for the same NEARBY_CUSTOMERS rows.

A product's ksqlDB total is the sum of DWELL_S over its sessions (the SQL comment says so);
the dashboard's is the sum of its minute buckets."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instore.settings import Settings
from stream_apps.analytics import DwellTracker
from stream_apps.ksqldb.testing import MemoryEngine

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "ksql" / "migrations").glob("V*.sql"))
GAP_S = Settings.model_fields["dwell_gap_s"].default  # DWELL_GAP_S's default, 5 s
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# (store_id, sku) -> the promotions near which a position at the product gives rows
PROMOS = {("s1", 101): ("p-sku-101", "p-seg-coffee"),  # one product, two promotions
          ("s1", 102): ("p-sku-102",),
          ("s2", 101): ("p-sku-101",)}


def nearby_row(uid: str, store_id: str, sku: int, pid: str, ts: int) -> dict[str, Any]:
    """A NEARBY_CUSTOMERS value as both writers write it (the contract's fields)."""
    return {"uid": uid, "store_id": store_id, "pid": pid, "sku": sku, "segment": "coffee",
            "distance_ft": 3.0, "latitude": 51.5, "longitude": -0.25,
            "product_latitude": 51.5, "product_longitude": -0.25, "country": "GB", "ts": ts}


def rows_at(uid: str, product: tuple[str, int], ts: int) -> list[dict[str, Any]]:
    """The rows of one position of ``uid`` at ``product``: one per promotion near it."""
    store_id, sku = product
    return [nearby_row(uid, store_id, sku, pid, ts) for pid in PROMOS[product]]


def dashboard_dwell(rows: list[dict[str, Any]]) -> dict[str, float]:
    """DwellTracker over the rows in topic order, as the analytics agent reads them, summed
    over its minute buckets per ``store_id:sku``."""
    tracker = DwellTracker(GAP_S)
    sums: defaultdict[tuple[int, str], float] = defaultdict(float)
    for r in rows:
        tracker.add(r["uid"], r["store_id"], r["sku"], r["ts"], sums)
    total: defaultdict[str, float] = defaultdict(float)
    for (_bucket, product), seconds in sums.items():
        total[product] += seconds
    return {p: round(s, 6) for p, s in total.items() if s > 0}


def inline_dashboard_dwell(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The proximity agent's own call (``add_position``: every product near one position at
    once), for the same rows grouped by position."""
    tracker = DwellTracker(GAP_S)
    sums: defaultdict[tuple[int, str], float] = defaultdict(float)
    positions: list[tuple[str, str, int, list[int]]] = []
    for r in rows:  # adjacent rows of one shopper, store and time: one position
        if positions and positions[-1][:3] == (r["uid"], r["store_id"], r["ts"]):
            positions[-1][3].append(r["sku"])
        else:
            positions.append((r["uid"], r["store_id"], r["ts"], [r["sku"]]))
    for uid, store_id, ts, skus in positions:
        tracker.add_position(uid, store_id, skus, ts, sums)
    total: defaultdict[str, float] = defaultdict(float)
    for (_bucket, product), seconds in sums.items():
        total[product] += seconds
    return {p: round(s, 6) for p, s in total.items() if s > 0}


def ksql_engine() -> MemoryEngine:
    engine = MemoryEngine()
    for path in MIGRATIONS:
        engine.execute(path.read_text())
    return engine


def ksql_dwell(rows: list[dict[str, Any]], engine: MemoryEngine | None = None) -> dict[str, float]:
    """PRODUCT_DWELL over the rows written to NEARBY_CUSTOMERS (key uid, record time ts), and a
    product's total as its SQL comment says: the sum of DWELL_S over its sessions."""
    engine = engine or ksql_engine()
    for r in rows:
        engine.insert("NEARBY_CUSTOMERS", key=r["uid"], value=r, timestamp=r["ts"])
    total: defaultdict[str, float] = defaultdict(float)
    for product_id, dwell_s in engine.pull("SELECT PRODUCT_ID, DWELL_S FROM PRODUCT_DWELL;"):
        total[product_id] += dwell_s
    return {p: round(s, 6) for p, s in total.items() if s > 0}


def scenario_rows() -> list[dict[str, Any]]:
    """Three shoppers, in time order: gaps below, at and above 5 s, one product near two
    promotions, a shopper near two products at once, the same SKU in two stores, replays."""
    a, b, s2 = ("s1", 101), ("s1", 102), ("s2", 101)
    timeline: list[tuple[int, str, tuple[str, int]]] = [
        # u1 at s1:101 (two promotions: two rows per moment)
        (0, "u1", a), (500, "u1", a), (1_000, "u1", a), (1_500, "u1", a),  # +1.5 s
        (4_500, "u1", a),  # a 3 s pause: +3 s
        (10_500, "u1", a),  # a 6 s pause: not dwell, a new visit
        (11_000, "u1", a),  # +0.5 s
        # u1 near s1:102 too at two of those moments
        (1_000, "u1", b), (2_000, "u1", b),  # +1 s
        # u2 at s1:102: a pause of exactly the gap counts, one ms more does not
        (0, "u2", b), (5_000, "u2", b),  # +5 s
        (10_001, "u2", b), (10_500, "u2", b),  # +0.499 s
        # u3 at s2:101 (the same SKU in another store is another product)
        (0, "u3", s2), (2_500, "u3", s2), (7_000, "u3", s2),  # +2.5 s, +4.5 s
    ]
    rows = []
    for offset, uid, product in sorted(timeline, key=lambda e: e[0]):
        rows.extend(rows_at(uid, product, T0 + offset))
    # replays (a redelivered batch): a row again right away, and an old row after later ones
    rows.insert(1, dict(rows[0]))
    rows.append(nearby_row("u1", "s1", 101, "p-sku-101", T0 + 1_000))
    rows.append(nearby_row("u3", "s2", 101, "p-sku-101", T0 + 2_500))
    return rows


EXPECTED = {"s1:101": 1.5 + 3 + 0.5, "s1:102": 1 + 5 + 0.499, "s2:101": 2.5 + 4.5}


def test_scenario_dashboard_dwell_is_the_hand_computed_one() -> None:
    rows = scenario_rows()
    assert dashboard_dwell(rows) == EXPECTED
    assert inline_dashboard_dwell(rows) == EXPECTED


def test_product_dwell_in_ksqldb_equals_the_dashboard_dwell() -> None:
    rows = scenario_rows()
    assert ksql_dwell(rows) == dashboard_dwell(rows) == EXPECTED


def test_product_dwell_sessions_per_shopper_and_product() -> None:
    """The sessions themselves: one per visit of a shopper to a product, its dwell the span of
    its rows; a pause over the gap splits a visit, the rows of one moment count once."""
    engine = ksql_engine()
    ksql_dwell(scenario_rows(), engine)
    got = sorted(
        (p, u, ws - T0, we - T0, d) for p, u, ws, we, d in engine.pull(
            "SELECT PRODUCT_ID, UID, WINDOWSTART, WINDOWEND, DWELL_S FROM PRODUCT_DWELL;"))
    assert got == [
        ("s1:101", "u1", 0, 4_500, 4.5),
        ("s1:101", "u1", 10_500, 11_000, 0.5),
        ("s1:102", "u1", 1_000, 2_000, 1.0),
        ("s1:102", "u2", 0, 5_000, 5.0),
        ("s1:102", "u2", 10_001, 10_500, 0.499),
        ("s2:101", "u3", 0, 7_000, 7.0),
    ]
    rows_per_session = Counter(
        (p, u, ws - T0) for p, u, ws, n in engine.pull(
            "SELECT PRODUCT_ID, UID, WINDOWSTART, NEAR_ROWS FROM PRODUCT_DWELL;") for _ in range(n))
    assert rows_per_session[("s1:101", "u1", 0)] == 5 * 2 + 1 + 1  # two promotions, replays


# -- the same for any shopper's rows: in time order per shopper, with replays ------------------
PRODUCTS = sorted(PROMOS)


@st.composite
def row_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Shoppers' positions in time order (pauses from 0 to 8 s, the gap's edges included),
    each at one or two products, merged by time; some rows redelivered later (replays)."""
    events: list[tuple[int, str, tuple[str, int]]] = []
    for uid in ("u1", "u2", "u3")[: draw(st.integers(1, 3))]:
        ts = T0 + draw(st.integers(0, 3_000))
        for _ in range(draw(st.integers(1, 12))):
            ts += draw(st.sampled_from([0, 1, 500, 2_500, 4_999, 5_000, 5_001, 8_000]))
            for product in draw(st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=2,
                                         unique=True)):
                events.append((ts, uid, product))
    events.sort(key=lambda e: e[0])
    rows = [r for ts, uid, product in events for r in rows_at(uid, product, ts)]
    for _ in range(draw(st.integers(0, 3))):  # replays: an earlier row again, later
        i = draw(st.integers(0, len(rows) - 1))
        j = draw(st.integers(i + 1, len(rows)))
        rows.insert(j, dict(rows[i]))
    return rows


@settings(max_examples=60, deadline=None)
@given(row_streams())
def test_product_dwell_equals_the_dashboard_dwell_for_any_rows(rows: list[dict[str, Any]]) -> None:
    want = dashboard_dwell(rows)
    assert inline_dashboard_dwell(rows) == want
    assert ksql_dwell(rows) == pytest.approx(want)
