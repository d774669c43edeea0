"""A store's day in numbers, from the archive (``instore.archive``'s DuckDB views): every
figure a daily report shows, as plain numbers, before anything is drawn.

The definitions are the live dashboard's, over one UTC day of one store:

- funnel per promotion: ``near`` = shoppers with a NEARBY row for the promotion;
  ``offered`` = offers made (distinct offers, by ``offer_ref``); ``delivered``, ``opened``,
  ``redeemed`` = those offers that reached the stage or a later one (an offer opened without
  a recorded delivery was delivered), whatever day the event came, so delivered >= opened >=
  redeemed always, and a redelivered event counts once;
- over the day: offers made and redemptions per hour (a redemption: an offer of the store
  redeemed, at the time of its first ``redeemed`` event, once per offer);
- dwell near a product: ``stream_apps.analytics.DwellTracker``'s rule (for one shopper at one
  product, the time between consecutive NEARBY rows at most ``dwell_gap_s`` apart);
- the floor heatmap: the same rule over the shoppers' positions (the seconds between a
  shopper's consecutive positions at most ``dwell_gap_s`` apart, placed at the later
  position), in cells of a local metric frame whose origin is the floor's south-west corner;
- top 10 % products by dwell and by redemptions: ``instore.ranking.top_share``;
- bought together: ``stream_apps.basket.BasketCounter`` (two redemptions of one shopper in the
  store, of different products, at most ``basket_window_s`` apart; a pair counts once per
  shopper, on the day the later redemption completes it) ranked by ``instore.ranking.top_pairs``.

Rows without a shopper (archived after the shopper's erasure) count as rows and offers but not
as shoppers, dwell or pairs: nothing links them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from instore import archive as a
from instore import serving
from instore.geo import LocalFrame
from instore.ranking import top_pairs, top_share
from stream_apps.basket import BasketCounter, Redemption
from stream_apps.funnel import STAGES  # offer_events in funnel order: the live funnel's stages

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
FLOOR_PAD_M = 3.0  # the floor is the products' extent and one aisle around it
CELLS_ALONG = 50  # heatmap cells along the floor's longer side, about
NICE_CELL_M = (0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0)
TOP_SHARE = 0.10
TOP_PAIRS = 10


class Totals(BaseModel):
    positions: int
    shoppers: int
    nearby_rows: int
    near_shoppers: int
    kiosk_interactions: int
    offers: int
    delivered: int
    opened: int
    redeemed: int  # of the day's offers
    redemptions: int  # redeemed during the day (offers of any day)
    dwell_s: float  # near promoted products


class PromotionFunnel(BaseModel):
    pid: str
    title: str | None
    near: int
    offered: int
    delivered: int
    opened: int
    redeemed: int
    open_rate: float | None  # opened / offered
    conversion: float | None  # redeemed / offered


class HourCount(BaseModel):
    hour: int  # 0..23 UTC
    offers: int
    redemptions: int


class ProductPoint(BaseModel):
    sku: int
    name: str | None
    x_m: float
    y_m: float


class Heatmap(BaseModel):
    """Dwell seconds per cell; ``seconds[iy][ix]`` covers x in [ix, ix + 1) * cell_m east and
    y in [iy, iy + 1) * cell_m north of the origin (the floor's south-west corner)."""

    origin_lat: float
    origin_lon: float
    floor_from: Literal["products", "positions"]
    cell_m: float
    nx: int
    ny: int
    width_m: float
    height_m: float
    seconds: list[list[float]]
    total_s: float
    outside_s: float  # dwell at positions off the floor's extent
    products: list[ProductPoint]


class RankedProduct(BaseModel):
    sku: int
    name: str | None
    value: float


class Pair(BaseModel):
    sku_a: int
    sku_b: int
    name_a: str | None
    name_b: str | None
    shoppers: int


class Report(BaseModel):
    store_id: str
    day: date
    dwell_gap_s: float
    basket_window_s: int
    has_data: bool
    totals: Totals
    funnels: list[PromotionFunnel]
    hourly: list[HourCount]
    heatmap: Heatmap | None
    top_dwell: list[RankedProduct]
    products_with_dwell: int
    top_redemptions: list[RankedProduct]
    products_redeemed: int
    pairs: list[Pair]
    pairs_total: int


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _rows(con: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return con.execute(sql, params).fetchall()


def stores_on(con: Any, day: date) -> list[str]:
    """The stores with any row of the day (positions, kiosk, nearby, offers)."""
    sql = " UNION ".join(f"SELECT DISTINCT store_id FROM {ds.name} WHERE date = $d"  # noqa: S608
                         for ds in (a.POSITIONS, a.KIOSK, a.NEARBY, a.OFFERS))
    return sorted(s for (s,) in _rows(con, sql, {"d": day}) if s is not None)


def store_known(con: Any, store_id: str) -> bool:
    """Whether the archive holds anything of the store, any day (its catalog included)."""
    sql = " UNION ALL ".join(f"SELECT 1 FROM (SELECT 1 FROM {ds.name} WHERE store = $s LIMIT 1)"  # noqa: S608
                             for ds in (a.POSITIONS, a.KIOSK, a.NEARBY, a.OFFERS, a.PRODUCTS))
    return bool(_rows(con, sql, {"s": store_id}))


def compute(con: Any, store_id: str, day: date, *, dwell_gap_s: float,
            basket_window_s: int) -> Report:
    """Every figure of the store's day; ``con`` is ``instore.archive.connect(location)``."""
    start = day_start_ms(day)
    p = {"d": day, "s": store_id}
    gap_ms = int(dwell_gap_s * 1000)  # as DwellTracker
    names, points = _catalog(con, store_id, day, start + DAY_MS)

    positions, shoppers = _rows(con, "SELECT count(*), count(DISTINCT shopper) FROM positions "
                                "WHERE date = $d AND store = $s", p)[0]
    nearby_rows, near_shoppers = _rows(con, "SELECT count(*), count(DISTINCT shopper) FROM nearby "
                                       "WHERE date = $d AND store = $s", p)[0]
    kiosk = _rows(con, "SELECT count(*) FROM kiosk_interactions WHERE date = $d AND store = $s",
                  p)[0][0]

    funnels = _funnels(con, p, _titles(con, day, start + DAY_MS))
    offers_by_hour = Counter({int(h): int(n) for h, n in _rows(con, """
        SELECT h, count(*) FROM (SELECT (min(ts) - $start) // 3600000 AS h FROM offers
          WHERE date = $d AND store = $s AND offer_ref IS NOT NULL GROUP BY offer_ref)
        GROUP BY h""", p | {"start": start})})

    redemptions = _redemptions(con, store_id, day, start - basket_window_s * 1000, start + DAY_MS)
    today = [r for r in redemptions if r[3] >= start]
    redeemed_by_hour = Counter((ts - start) // HOUR_MS for _, _, _, ts in today)
    by_sku: Counter[str] = Counter()
    for _, _, sku, _ in today:
        if sku is not None:
            by_sku[f"{store_id}:{sku}"] += 1

    dwell: Counter[str] = Counter({f"{store_id}:{sku}": float(s) for sku, s in _rows(con, """
        WITH n AS (SELECT DISTINCT shopper, sku, ts FROM nearby WHERE date = $d AND store = $s
                   AND shopper IS NOT NULL AND sku IS NOT NULL AND ts IS NOT NULL),
             g AS (SELECT sku, ts - lag(ts) OVER (PARTITION BY shopper, sku ORDER BY ts) AS d
                   FROM n)
        SELECT sku, sum(d) / 1000.0 FROM g WHERE d <= $gap GROUP BY sku""", p | {"gap": gap_ms})})

    pairs_total, pairs = _pairs(store_id, redemptions, basket_window_s, start, names)
    totals = Totals(
        positions=positions, shoppers=shoppers, nearby_rows=nearby_rows,
        near_shoppers=near_shoppers, kiosk_interactions=kiosk,
        offers=sum(f.offered for f in funnels), delivered=sum(f.delivered for f in funnels),
        opened=sum(f.opened for f in funnels), redeemed=sum(f.redeemed for f in funnels),
        redemptions=len(today), dwell_s=sum(dwell.values()))
    return Report(
        store_id=store_id, day=day, dwell_gap_s=dwell_gap_s, basket_window_s=basket_window_s,
        has_data=bool(positions or nearby_rows or kiosk or totals.offers or today),
        totals=totals, funnels=funnels,
        hourly=[HourCount(hour=h, offers=offers_by_hour[h], redemptions=redeemed_by_hour[h])
                for h in range(24)],
        heatmap=_heatmap(con, p, points, gap_ms),
        top_dwell=_ranked(dwell, names), products_with_dwell=sum(1 for v in dwell.values() if v > 0),
        top_redemptions=_ranked(by_sku, names), products_redeemed=len(by_sku),
        pairs=pairs, pairs_total=pairs_total)


def _catalog(con: Any, store_id: str, day: date, end: int
             ) -> tuple[dict[int, str | None], list[tuple[int, str | None, float, float]]]:
    """The store's products from the ``products`` changelog up to the day's end: names of every
    product that existed (latest version), and the points of those still there at the end."""
    rows = _rows(con, """
        WITH c AS (SELECT key, sku, name, latitude, longitude, deleted, kafka_ts, kafka_offset
                   FROM products WHERE store = $s AND date <= $d AND kafka_ts < $end),
             last AS (SELECT key, deleted AS gone FROM c QUALIFY row_number() OVER (
                        PARTITION BY key ORDER BY kafka_ts DESC, kafka_offset DESC) = 1),
             named AS (SELECT key, sku, name, latitude, longitude FROM c WHERE NOT deleted
                       QUALIFY row_number() OVER (
                        PARTITION BY key ORDER BY kafka_ts DESC, kafka_offset DESC) = 1)
        SELECT named.sku, named.name, named.latitude, named.longitude, last.gone
        FROM named JOIN last USING (key) ORDER BY named.sku""",
                 {"s": store_id, "d": day, "end": end})
    names = {int(sku): name for sku, name, *_ in rows if sku is not None}
    points = [(int(sku), name, float(lat), float(lon)) for sku, name, lat, lon, gone in rows
              if sku is not None and lat is not None and lon is not None and not gone]
    return names, points


def _titles(con: Any, day: date, end: int) -> dict[str, str | None]:
    """Each promotion's latest title up to the day's end (withdrawn ones included)."""
    return dict(_rows(con, """
        SELECT pid, title FROM promotions WHERE date <= $d AND kafka_ts < $end AND NOT deleted
        QUALIFY row_number() OVER (PARTITION BY key ORDER BY kafka_ts DESC, kafka_offset DESC) = 1
        """, {"d": day, "end": end}))


def _funnels(con: Any, p: dict[str, Any], titles: dict[str, str | None]) -> list[PromotionFunnel]:
    stage = " ".join(f"WHEN '{name}' THEN {i + 1}" for i, name in enumerate(STAGES))
    reached = ", ".join(f"count(*) FILTER (WHERE stage >= {i + 1})" for i in range(len(STAGES)))
    offered = {pid: (title, n, *stages) for pid, title, n, *stages in _rows(con, f"""
        WITH o AS (SELECT offer_ref, any_value(pid) AS pid, any_value(title) AS title FROM offers
                   WHERE date = $d AND store = $s AND offer_ref IS NOT NULL GROUP BY offer_ref),
             e AS (SELECT offer_ref, max(CASE event {stage} ELSE 0 END) AS stage
                   FROM offer_events WHERE date >= $d
                   AND offer_ref IN (SELECT offer_ref FROM o) GROUP BY offer_ref)
        SELECT pid, any_value(title), count(*), {reached}
        FROM o LEFT JOIN e USING (offer_ref) GROUP BY pid""", p)}  # noqa: S608 - constants
    near = dict(_rows(con, "SELECT pid, count(DISTINCT shopper) FROM nearby "
                      "WHERE date = $d AND store = $s AND pid IS NOT NULL GROUP BY pid", p))
    out = []
    for pid in sorted(set(offered) | set(near)):
        title, n, delivered, opened, redeemed = offered.get(pid, (None, 0, 0, 0, 0))
        out.append(PromotionFunnel(
            pid=pid, title=titles.get(pid) or title, near=int(near.get(pid, 0)), offered=n,
            delivered=delivered, opened=opened, redeemed=redeemed,
            open_rate=round(opened / n, 4) if n else None,
            conversion=round(redeemed / n, 4) if n else None))
    out.sort(key=lambda f: (-f.offered, -f.near, f.pid))
    return out


def _redemptions(con: Any, store_id: str, day: date, since: int, end: int
                 ) -> list[tuple[str, str | None, int | None, int]]:
    """(offer_ref, shopper, sku, ts of the first redeemed event) of the store's offers whose
    first redemption falls in [since, end), in time order."""
    first_day = a.day_of(since) - timedelta(days=1)  # a redelivery may be filed a day later
    return [(ref, shopper, sku, int(ts)) for ref, shopper, sku, ts in _rows(con, """
        WITH o AS (SELECT offer_ref, any_value(shopper) AS shopper, any_value(sku) AS sku
                   FROM offers WHERE store = $s AND date <= $d AND offer_ref IS NOT NULL
                   GROUP BY offer_ref),
             r AS (SELECT offer_ref, min(ts) AS ts FROM offer_events
                   WHERE event = 'redeemed' AND date BETWEEN $first AND $d
                   AND offer_ref IS NOT NULL GROUP BY offer_ref)
        SELECT r.offer_ref, o.shopper, o.sku, r.ts FROM r JOIN o USING (offer_ref)
        WHERE r.ts >= $since AND r.ts < $end ORDER BY r.ts, r.offer_ref""",
        {"s": store_id, "d": day, "first": first_day, "since": since, "end": end})]


def _pairs(store_id: str, redemptions: list[tuple[str, str | None, int | None, int]],
           window_s: int, start: int, names: dict[int, str | None]) -> tuple[int, list[Pair]]:
    counter = BasketCounter(window_s)
    for ref, shopper, sku, ts in redemptions:
        if shopper is not None and sku is not None:
            counter.add(shopper, Redemption(store_id, int(sku), ts, ref), now=ts)
    totals: Counter[str] = Counter()
    bucket_ms = serving.ANALYTICS_BUCKET_S * 1000
    for (bucket, pair), n in counter.counts.items():
        if start <= bucket * bucket_ms < start + DAY_MS:  # completed during the day
            totals[pair] += n
    matched, rows = top_pairs(totals, store_id=store_id, limit=TOP_PAIRS)
    return matched, [Pair(sku_a=low, sku_b=high, name_a=names.get(low), name_b=names.get(high),
                          shoppers=n) for _, low, high, n in rows]


def _ranked(totals: Counter[str], names: dict[int, str | None]) -> list[RankedProduct]:
    out = []
    for member, value in top_share(totals, TOP_SHARE):
        sku = int(member.rsplit(":", 1)[1])
        out.append(RankedProduct(sku=sku, name=names.get(sku), value=value))
    return out


def cell_size(longer_side_m: float) -> float:
    """The smallest round cell size giving at most about ``CELLS_ALONG`` cells along a side."""
    raw = longer_side_m / CELLS_ALONG
    return next((c for c in NICE_CELL_M if c >= raw), NICE_CELL_M[-1])


def _heatmap(con: Any, p: dict[str, Any], points: list[tuple[int, str | None, float, float]],
             gap_ms: int) -> Heatmap | None:
    floor_from: Literal["products", "positions"]
    if len({(lat, lon) for _, _, lat, lon in points}) >= 2:
        lats, lons = [pt[2] for pt in points], [pt[3] for pt in points]
        box = (min(lats), max(lats), min(lons), max(lons))
        floor_from = "products"
    else:
        row = _rows(con, "SELECT min(latitude), max(latitude), min(longitude), max(longitude) "
                    "FROM positions WHERE date = $d AND store = $s", p)[0]
        if row[0] is None:
            return None
        box = tuple(float(v) for v in row)  # type: ignore[assignment]
        floor_from = "positions"
    lat_min, lat_max, lon_min, lon_max = box
    corner = LocalFrame(lat_min, lon_min).to_latlon(-FLOOR_PAD_M, -FLOOR_PAD_M)
    frame = LocalFrame(*corner)
    kx = frame.to_xy(frame.lat0, frame.lon0 + 1.0)[0]  # metres per degree east, north
    ky = frame.to_xy(frame.lat0 + 1.0, frame.lon0)[1]
    width = (lon_max - frame.lon0) * kx + FLOOR_PAD_M
    height = (lat_max - frame.lat0) * ky + FLOOR_PAD_M
    cell = cell_size(max(width, height))
    nx, ny = max(1, math.ceil(width / cell)), max(1, math.ceil(height / cell))
    grid = [[0.0] * nx for _ in range(ny)]
    outside = 0.0
    cells = _rows(con, """
        WITH q AS (SELECT shopper, latitude, longitude, ts FROM positions
                   WHERE date = $d AND store = $s AND shopper IS NOT NULL AND ts IS NOT NULL
                   AND latitude IS NOT NULL AND longitude IS NOT NULL),
             g AS (SELECT latitude, longitude,
                          ts - lag(ts) OVER (PARTITION BY shopper ORDER BY ts) AS d FROM q)
        SELECT CAST(floor((longitude - $lon0) * $kx / $cell) AS BIGINT),
               CAST(floor((latitude - $lat0) * $ky / $cell) AS BIGINT), sum(d) / 1000.0
        FROM g WHERE d > 0 AND d <= $gap GROUP BY ALL""",
                  p | {"lat0": frame.lat0, "lon0": frame.lon0, "kx": kx, "ky": ky,
                       "cell": cell, "gap": gap_ms})
    acc: defaultdict[tuple[int, int], float] = defaultdict(float)
    for ix, iy, seconds in cells:
        if 0 <= ix < nx and 0 <= iy < ny:
            acc[(int(ix), int(iy))] += float(seconds)
        else:
            outside += float(seconds)
    for (ix, iy), seconds in acc.items():
        grid[iy][ix] = seconds
    products = [ProductPoint(sku=sku, name=name, x_m=x, y_m=y)
                for sku, name, lat, lon in points for x, y in [frame.to_xy(lat, lon)]]
    return Heatmap(origin_lat=frame.lat0, origin_lon=frame.lon0, floor_from=floor_from,
                   cell_m=cell, nx=nx, ny=ny, width_m=width, height_m=height, seconds=grid,
                   total_s=sum(acc.values()) + outside, outside_s=outside, products=products)
