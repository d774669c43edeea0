"""Daily reports: a small archive written through the archiver's own row and file code (no
Kafka), then every figure checked against numbers worked out by hand from the rows below, the
HTML checked for its plots and numbers, and the files and the daily loop's skipping."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from instore import archive as a
from instore import records as r
from stream_apps.analytics import DwellTracker
from stream_apps.archive import rows as rw
from stream_apps.archive.writer import ArchiveWriter
from stream_apps.reports import daily, figures, render
from stream_apps.reports.exceptions import BadDay, NoArchive, UnknownStore

DAY = date(2026, 1, 1)
START = 1_767_225_600_000  # DAY 00:00 UTC
S, M, H = 1000, 60_000, 3_600_000
GAP_S, WINDOW_S = 5.0, 7200
KEYS: dict[str, bytes | None] = {"alice": b"a" * 32, "bob": b"b" * 32, "carol": b"c" * 32,
                                 "dave": b"d" * 32, "eve": None}  # eve: erased before archiving
APPLES, BREAD, CHEESE, DATES = (51.5, -0.1), (51.5003, -0.1), (51.5, -0.0995), (51.5001, -0.0998)
NEAR = (0.00001, 0.00001)  # a shopper stands ~1.1 m north and ~0.7 m east of the product


def at(product: tuple[float, float]) -> tuple[float, float]:
    return product[0] + NEAR[0], product[1] + NEAR[1]


class Topic:
    """Records of one topic as the archiver would get them, offsets in order."""

    def __init__(self, name: str) -> None:
        self.name, self.messages = name, []

    def add(self, record: r.Record | None, ts: int, key: str = "k") -> None:
        self.messages.append(rw.Message(self.name, 0, len(self.messages), ts, key.encode(),
                                        None if record is None else record.to_json()))


def build_archive(root: Path) -> None:
    products, promos = Topic("stores_products"), Topic("products_promotions")
    positions, nearby = Topic("customers_locations"), Topic("NEARBY_CUSTOMERS")
    offers, events, kiosk = Topic("offers"), Topic("offer_events"), Topic("kiosk_interactions")

    def product(store: str, sku: int, name: str, where: tuple[float, float], ts: int) -> None:
        products.add(r.StoreProduct(sku=sku, store_id=store, segment="food", name=name,
                                    latitude=where[0], longitude=where[1]), ts, f"{store}:{sku}")

    for sku, name, where in ((1, "Apples", APPLES), (2, "Bread", BREAD), (3, "Cheese", CHEESE),
                             (4, "Dates", DATES)):
        product("s1", sku, name, where, START - 48 * H)
    product("s1", 1, "Green apples", APPLES, START - 24 * H)  # renamed the day before
    products.add(None, START + 12 * H, "s1:4")  # dates leave the floor during the day
    product("s1", 1, "RENAMED LATER", APPLES, START + 30 * H)  # after the day: not used
    product("s1", 5, "Eggs", (51.6, -0.2), START + 30 * H)  # added after the day: not drawn
    product("s2", 1, "Pears", (48.85, 2.35), START - 48 * H)

    def promo(pid: str, sku: int, title: str, ts: int) -> None:
        promos.add(r.Promotion(pid=pid, sku=sku, title=title, discount_pct=10), ts, pid)

    promo("p1", 1, "10% off apples", START - 48 * H)
    promo("p1x", 1, "Apple week", START - 48 * H)
    promo("p2", 2, "Bread deal", START - 48 * H)
    promo("p3", 3, "Cheese deal", START - 48 * H)
    promo("p1", 1, "RENAMED PROMO", START + 30 * H)

    def pos(uid: str, store: str, where: tuple[float, float], ts: int) -> None:
        positions.add(r.CustomerLocation(uid=uid, store_id=store, latitude=where[0],
                                         longitude=where[1], ts=ts, source="sim"), ts, uid)

    t0 = START + 9 * H
    for i in range(10):  # alice at the apples, 1 s apart: 9 s
        pos("alice", "s1", at(APPLES), t0 + i * S)
    for i in range(4):  # 20 s later (a break), at the bread, 2 s apart: 6 s
        pos("alice", "s1", at(BREAD), t0 + 29 * S + i * 2 * S)
    for i in range(3):  # bob at the cheese, exactly 5 s apart: 10 s
        pos("bob", "s1", at(CHEESE), t0 + i * 5 * S)
    pos("bob", "s1", (51.51, -0.1), t0 + 13 * S)  # 3 s later, ~1 km away: off the floor
    pos("bob", "s1", at(APPLES), t0 + 40 * S)  # 27 s later: no dwell
    pos("eve", "s1", at(APPLES), t0 + 1 * S)  # no shopper: a position, no dwell
    for i in range(5):
        pos("dave", "s2", (48.85, 2.35), t0 + i * S)

    def near(uid: str, store: str, pid: str, sku: int, ts: int) -> None:
        nearby.add(r.NearbyCustomer(uid=uid, store_id=store, pid=pid, sku=sku, segment="food",
                                    distance_ft=3.0, latitude=51.5, longitude=-0.1,
                                    product_latitude=51.5, product_longitude=-0.1, ts=ts), ts, uid)

    for dt in (0, 2, 4, 12, 14):  # alice at sku 1: 2 + 2, (an 8 s break), 2 = 6 s
        near("alice", "s1", "p1", 1, t0 + dt * S)
    near("alice", "s1", "p1x", 1, t0 + 2 * S)  # the same moment through another promotion
    for dt in (100, 103, 106):  # bob at sku 2: 6 s
        near("bob", "s1", "p2", 2, t0 + dt * S)
    for dt in (200, 205, 211):  # bob at sku 1: 5 s (exactly the gap), then 6 s: a break
        near("bob", "s1", "p1", 1, t0 + dt * S)
    near("carol", "s1", "p3", 3, t0 + 300 * S)  # one row: near, no dwell
    near("eve", "s1", "p3", 3, t0 + 301 * S)  # no shopper: not counted as one
    for dt in range(0, 60, 2):
        near("dave", "s2", "p1", 1, t0 + dt * S)

    def offer(oid: str, uid: str, store: str, pid: str, sku: int, ts: int) -> None:
        offers.add(r.Offer(offer_id=oid, uid=uid, store_id=store, pid=pid, sku=sku,
                           title=f"offer {pid}", discount_pct=10, distance_ft=3, ts=ts,
                           expires_at=ts + 15 * M), ts, uid)

    def event(oid: str, uid: str, kind: str, ts: int) -> None:
        events.add(r.OfferEvent(offer_id=oid, uid=uid, event=kind, ts=ts), ts, oid)  # type: ignore[arg-type]

    # the day before: carol's bread (redeemed then), bob's cheese (redeemed after midnight)
    offer("o6", "carol", "s1", "p2", 2, START - 40 * M)
    event("o6", "carol", "delivered", START - 39 * M)
    event("o6", "carol", "redeemed", START - 30 * M)
    offer("o0", "bob", "s1", "p3", 3, START - 10 * M)
    event("o0", "bob", "delivered", START - 9 * M)
    event("o0", "bob", "redeemed", START + 10 * M)
    # the day
    offer("o7", "carol", "s1", "p3", 3, START + 15 * M)
    event("o7", "carol", "delivered", START + 16 * M)
    event("o7", "carol", "redeemed", START + 20 * M)  # never "opened": counts as opened
    offer("o1", "alice", "s1", "p1", 1, t0)
    offer("o1", "alice", "s1", "p1", 1, t0)  # the offer record redelivered
    event("o1", "alice", "delivered", t0 + 1 * S)
    event("o1", "alice", "opened", t0 + 2 * M)
    event("o1", "alice", "redeemed", t0 + 5 * M)
    event("o1", "alice", "redeemed", t0 + 6 * M)  # redelivered
    offer("o2", "bob", "s1", "p2", 2, t0)
    event("o2", "bob", "delivered", t0 + 1 * S)
    event("o2", "bob", "opened", t0 + 3 * M)
    offer("o5", "alice", "s1", "p2", 2, t0 + 30 * M)
    event("o5", "alice", "delivered", t0 + 31 * M)
    event("o5", "alice", "redeemed", t0 + 40 * M)
    offer("o3", "bob", "s1", "p1", 1, START + 10 * H)
    event("o3", "bob", "delivered", START + 10 * H + 1 * S)
    event("o3", "bob", "delivered", START + 10 * H + 1 * S)  # redelivered
    event("o3", "bob", "redeemed", START + 10 * H + 30 * M)
    offer("o8", "bob", "s1", "p2", 2, START + 10 * H + 50 * M)
    event("o8", "bob", "redeemed", START + 11 * H)  # no delivery recorded: counts as delivered
    offer("o12", "alice", "s1", "p1", 1, START + 13 * H)
    event("o12", "alice", "redeemed", START + 13 * H + 10 * M)
    offer("o11", "carol", "s1", "p3", 3, START + 14 * H)  # never delivered
    offer("o4", "carol", "s1", "p3", 3, START + 23 * H + 30 * M)
    event("o4", "carol", "delivered", START + 23 * H + 31 * M)
    event("o4", "carol", "opened", START + 24 * H + 5 * M)  # the next day
    offer("o9", "eve", "s1", "p1", 1, START + 12 * H)  # no identity: no offer_ref
    offer("o10", "dave", "s2", "p1", 1, t0)
    event("o10", "dave", "redeemed", t0 + M)

    for action in ("checkin", "view", "checkout"):
        kiosk.add(r.KioskInteraction(store_id="s1", kiosk_id="k1", uid="alice", action=action,
                                     ts=t0 + 50 * S), t0 + 50 * S, "s1:k1")
    kiosk.add(r.KioskInteraction(store_id="s2", kiosk_id="k1", action="view", ts=t0), t0, "s2:k1")

    writer = ArchiveWriter(str(root))
    for topic in (products, promos, positions, nearby, offers, events, kiosk):
        dataset = a.BY_TOPIC[topic.name]
        groups = rw.rows(dataset, rw.decode(dataset, topic.messages), KEYS)
        writer.commit(topic.name, 0, 0, len(topic.messages) - 1, groups)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    build_archive(root)
    return root


def report_of(archive: Path, store: str = "s1", day: date = DAY) -> figures.Report:
    con = a.connect(str(archive))
    try:
        return figures.compute(con, store, day, dwell_gap_s=GAP_S, basket_window_s=WINDOW_S)
    finally:
        con.close()


def test_totals(archive: Path) -> None:
    t = report_of(archive).totals
    assert t.positions == 10 + 4 + 5 + 1 and t.shoppers == 2  # eve's position has no shopper
    assert t.nearby_rows == 5 + 1 + 3 + 3 + 1 + 1 and t.near_shoppers == 3
    assert t.kiosk_interactions == 3
    assert (t.offers, t.delivered, t.opened, t.redeemed) == (9, 8, 8, 3 + 2 + 1)
    assert t.redemptions == 7  # o0 o7 o1 o5 o3 o8 o12: o6 was the day before, o10 in s2
    assert t.dwell_s == pytest.approx(6 + 6 + 5)


def test_funnel_per_promotion(archive: Path) -> None:
    funnels = {f.pid: f for f in report_of(archive).funnels}
    stages = {pid: (f.near, f.offered, f.delivered, f.opened, f.redeemed)
              for pid, f in funnels.items()}
    assert stages == {
        "p1": (2, 3, 3, 3, 3),  # alice, bob near; o1 o3 o12, all redeemed (o9 has no identity)
        "p1x": (1, 0, 0, 0, 0),
        "p2": (1, 3, 3, 3, 2),  # bob near; o2 opened, o5 redeemed, o8 redeemed undelivered
        "p3": (1, 3, 2, 2, 1),  # carol near (eve not a shopper); o7 redeemed, o4 opened, o11
    }
    for f in funnels.values():
        assert f.offered >= f.delivered >= f.opened >= f.redeemed
    assert funnels["p1"].title == "10% off apples"  # as of the day's end, not the later rename
    assert funnels["p2"].open_rate == pytest.approx(1.0)
    assert funnels["p3"].conversion == pytest.approx(round(1 / 3, 4))


def test_offers_and_redemptions_per_hour(archive: Path) -> None:
    hourly = {h.hour: (h.offers, h.redemptions) for h in report_of(archive).hourly}
    assert len(hourly) == 24
    nonzero = {h: v for h, v in hourly.items() if v != (0, 0)}
    assert nonzero == {0: (1, 2), 9: (3, 2), 10: (2, 1), 11: (0, 1), 13: (1, 1), 14: (1, 0),
                       23: (1, 0)}


def test_top_products_and_pairs(archive: Path) -> None:
    rep = report_of(archive)
    assert rep.products_with_dwell == 2
    assert [(p.sku, p.name, p.value) for p in rep.top_dwell] == [(1, "Green apples", 6.0 + 5.0)]
    # redemptions: apples o1 o3 o12, bread o5 o8, cheese o0 o7 -> the top tenth of 3 is one
    assert rep.products_redeemed == 3
    assert [(p.sku, p.value) for p in rep.top_redemptions] == [(1, 3.0)]
    # alice and bob took apples and bread within 2 h; carol bread (the day before, 23:30) and
    # cheese (00:20); alice's second apples does not count her twice
    assert [(p.sku_a, p.sku_b, p.shoppers) for p in rep.pairs] == [(1, 2, 2), (2, 3, 1)]
    assert rep.pairs_total == 2 and rep.pairs[0].name_b == "Bread"


def test_dwell_is_the_live_dashboards(archive: Path) -> None:
    """The SQL dwell equals DwellTracker's over the same NEARBY rows (read with pyarrow)."""
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((archive / "nearby" / "date=2026-01-01" / "store=s1").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    tracker, out = DwellTracker(GAP_S), Counter()
    for row in sorted(rows, key=lambda x: x["ts"]):
        if row["shopper"]:
            tracker.add(row["shopper"], row["store_id"], row["sku"], row["ts"], out)
    by_sku: Counter[int] = Counter()
    for (_, member), seconds in out.items():
        by_sku[int(member.split(":")[1])] += seconds
    rep = report_of(archive)
    assert rep.top_dwell[0].value == pytest.approx(by_sku[1])
    assert rep.totals.dwell_s == pytest.approx(sum(by_sku.values()))


def metres(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    ky = 6_371_000 * math.pi / 180
    return (lon - lon0) * ky * math.cos(math.radians(lat0)), (lat - lat0) * ky


def test_heatmap_is_dwell_on_the_floor_in_metres(archive: Path) -> None:
    h = report_of(archive).heatmap
    assert h is not None and h.floor_from == "products"
    assert h.total_s == pytest.approx(9 + 6 + 10 + 3) and h.outside_s == pytest.approx(3)
    assert sum(map(sum, h.seconds)) == pytest.approx(25)
    # the floor: the products still there at the day's end (not the dates, not the eggs), 3 m
    # around them
    assert sorted(p.sku for p in h.products) == [1, 2, 3]
    ky = 6_371_000 * math.pi / 180
    lat0 = APPLES[0] - 3 / ky
    lon0 = APPLES[1] - 3 / (ky * math.cos(math.radians(lat0)))
    assert (h.origin_lat, h.origin_lon) == pytest.approx((lat0, lon0), abs=1e-8)
    width, height = metres(CHEESE[0], CHEESE[1], lat0, lon0)[0] + 3, \
        metres(BREAD[0], BREAD[1], lat0, lon0)[1] + 3
    assert (h.width_m, h.height_m) == pytest.approx((width, height), abs=0.01)
    assert h.nx * h.cell_m >= h.width_m and h.ny * h.cell_m >= h.height_m
    assert max(h.nx, h.ny) <= 60
    apples = next(p for p in h.products if p.sku == 1)
    assert (apples.x_m, apples.y_m) == pytest.approx((3.0, 3.0), abs=0.01)
    for product, seconds in ((APPLES, 9), (BREAD, 6), (CHEESE, 10)):
        x, y = metres(*at(product), lat0, lon0)
        assert h.seconds[int(y // h.cell_m)][int(x // h.cell_m)] == pytest.approx(seconds)


def test_another_store_and_an_empty_day(archive: Path) -> None:
    s2 = report_of(archive, "s2")
    assert s2.totals.redemptions == 1 and s2.totals.positions == 5
    assert [(f.pid, f.near, f.offered, f.redeemed) for f in s2.funnels] == [("p1", 1, 1, 1)]
    empty = report_of(archive, "s1", DAY + timedelta(days=5))
    assert not empty.has_data and empty.funnels == [] and empty.totals.offers == 0
    assert empty.heatmap is not None and empty.heatmap.total_s == 0  # the floor, no one on it


def test_html_holds_the_plots_and_the_numbers(archive: Path) -> None:
    rep = report_of(archive)
    out = render.render(rep, pdf=True, generated_at=datetime(2026, 1, 2, 3, tzinfo=UTC))
    assert [p.key for p in out.plots] == ["funnel", "hourly", "heatmap", "top_dwell",
                                         "top_redemptions", "pairs"]
    html = out.html
    assert html.count("<svg") == 6 and "<?xml" not in html and "http://" not in html.replace(
        "http://www.w3.org", "")  # self-contained: no external resource
    for text in ("Store s1, 2026-01-01", "10% off apples", "Bread deal", "Green apples (1)",
                 "Green apples (1) + Bread (2)", "m</text>"):
        assert text in html, text
    assert "RENAMED" not in html and "No data for store" not in html
    assert out.pdf is not None and out.pdf.startswith(b"%PDF") and len(out.pdf) > 10_000
    empty = render.render(report_of(archive, "s1", DAY + timedelta(days=5)), pdf=False,
                          generated_at=datetime(2026, 1, 7, tzinfo=UTC))
    assert "No data for store s1 on 2026-01-06" in empty.html and empty.pdf is None


def test_files_and_the_daily_loop(archive: Path, tmp_path: Path) -> None:
    now = datetime(2026, 1, 2, 3, tzinfo=UTC)
    written = daily.write_report(str(archive), "s1", DAY, dwell_gap_s=GAP_S,
                                 basket_window_s=WINDOW_S, out=str(tmp_path), now=now)
    assert set(written.paths) == {"html", "pdf", "json"}
    for path in written.paths.values():
        assert Path(path).exists() and Path(path).parent == tmp_path
    assert json.loads(Path(written.paths["json"]).read_text())["totals"]["redemptions"] == 7
    with pytest.raises(UnknownStore, match="no store 'nowhere'.*stores: s1, s2"):
        daily.write_report(str(archive), "nowhere", DAY, dwell_gap_s=GAP_S,
                           basket_window_s=WINDOW_S, out=str(tmp_path), now=now)
    with pytest.raises(BadDay):
        daily.write_report(str(archive), "s1", date(2026, 1, 3), dwell_gap_s=GAP_S,
                           basket_window_s=WINDOW_S, out=str(tmp_path), now=now)
    with pytest.raises(NoArchive):
        daily.write_report(str(tmp_path / "none"), "s1", DAY, dwell_gap_s=GAP_S,
                           basket_window_s=WINDOW_S, now=now)
    assert daily.due_day(datetime(2026, 1, 2, 1, 59, tzinfo=UTC), 2) is None
    assert daily.due_day(datetime(2026, 1, 2, 2, tzinfo=UTC), 2) == DAY
    assert daily.due_day(datetime(2026, 1, 2, 23, tzinfo=UTC), -1) is None
    loop_out = str(tmp_path / "loop")
    kw = {"dwell_gap_s": GAP_S, "basket_window_s": WINDOW_S, "out": loop_out, "pdf": False}
    assert daily.render_day(str(archive), DAY, **kw) == {"s1": "written", "s2": "written"}
    assert daily.render_day(str(archive), DAY, **kw) == {"s1": "skipped", "s2": "skipped"}
    assert sorted(p.name for p in Path(loop_out).iterdir()) == [
        "s1_2026-01-01.html", "s1_2026-01-01.json", "s2_2026-01-01.html", "s2_2026-01-01.json"]
