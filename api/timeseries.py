"""Offers and redemptions over time, per promotion or per store, from the archive (DuckDB).

Why the archive and not per-minute counters in Redis: the archive holds any date range (Redis
keeps derived state for a day), and it is where the daily reports count from, so a chart and a
report of the same hours agree. A redemption is an offer's first ``redeemed`` event, counted
once per offer at that event's time (the funnel's "reached redeemed", stream_apps/funnel.py);
an offer counts at the time it was made. The cost: the archiver writes a file set every
ARCHIVE_FLUSH_S, so the latest minute(s) show up that late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from instore import archive as a
from instore.errors import InstoreError

Metric = Literal["offers", "redemptions"]
Bucket = Literal["minute", "hour"]
By = Literal["total", "promotion", "store"]
BUCKET_MS: dict[Bucket, int] = {"minute": 60_000, "hour": 3_600_000}
MAX_BUCKETS = 5000  # a chart of more points than this is unreadable and slow; widen the bucket
MAX_SERIES = 10
_GROUP = {"total": "'all'", "promotion": "pid", "store": "store_id"}


class RangeError(InstoreError, ValueError):
    """A range the chart cannot draw (empty, reversed, too many buckets)."""


@dataclass
class Series:
    key: str
    total: int
    points: list[int] = field(default_factory=list)  # one count per bucket, from ``start``
    title: str | None = None  # the promotion's title as archived (for a withdrawn promotion)


def buckets(start_ms: int, end_ms: int, bucket: Bucket) -> tuple[int, int]:
    """(first bucket's start, number of buckets) covering [start_ms, end_ms)."""
    if end_ms <= start_ms:
        msg = "'to' must be after 'from'"
        raise RangeError(msg)
    size = BUCKET_MS[bucket]
    first = start_ms // size * size
    n = -(-(end_ms - first) // size)
    if n > MAX_BUCKETS:
        msg = (f"{n} {bucket}s between 'from' and 'to': at most {MAX_BUCKETS} per chart "
               f"(choose a shorter range or hourly buckets)")
        raise RangeError(msg)
    return first, n


def _sql(metric: Metric, by: By, pid: str | None, store_id: str | None) -> str:
    group = _GROUP[by]
    where = "".join([" AND pid = $pid" if pid else "", " AND store_id = $store" if store_id else ""])
    if metric == "offers":  # an offer redelivered counts once, at its first record's time
        return f"""
            WITH o AS (SELECT offer_ref, any_value(pid) AS pid, any_value(store_id) AS store_id,
                              any_value(title) AS title, min(ts) AS ts
                       FROM offers WHERE date BETWEEN $d0 AND $d1 AND offer_ref IS NOT NULL
                       GROUP BY offer_ref)
            SELECT {group} AS k, ts // $size * $size AS t, count(*) AS n, any_value(title)
            FROM o WHERE ts >= $from AND ts < $to{where}
            GROUP BY ALL"""  # noqa: S608 - constants; values are parameters
    return f"""
        WITH o AS (SELECT offer_ref, any_value(pid) AS pid, any_value(store_id) AS store_id,
                          any_value(title) AS title
                   FROM offers WHERE date BETWEEN $before AND $d1 AND offer_ref IS NOT NULL
                   GROUP BY offer_ref),
             r AS (SELECT offer_ref, min(ts) AS ts FROM offer_events
                   WHERE event = 'redeemed' AND offer_ref IS NOT NULL
                     AND date BETWEEN $before AND $after GROUP BY offer_ref)
        SELECT {group} AS k, r.ts // $size * $size AS t, count(*) AS n, any_value(title) AS title
        FROM r JOIN o USING (offer_ref)
        WHERE r.ts >= $from AND r.ts < $to{where}
        GROUP BY ALL"""  # noqa: S608 - constants; values are parameters


def timeseries(location: str, metric: Metric, bucket: Bucket, start_ms: int, end_ms: int, *,
               by: By = "total", pid: str | None = None,
               store_id: str | None = None) -> tuple[int, int, list[Series]]:
    """(first bucket start, bucket count, series with the most first, at most MAX_SERIES)."""
    first, n = buckets(start_ms, end_ms, bucket)
    size = BUCKET_MS[bucket]
    params: dict[str, Any] = {"size": size, "from": start_ms, "to": end_ms,
                              "d0": a.day_of(start_ms), "d1": a.day_of(end_ms - 1)}
    if metric == "redemptions":  # an offer made the day before; a redelivery filed a day later
        params |= {"before": params["d0"] - timedelta(days=1),
                   "after": params["d1"] + timedelta(days=1)}
        del params["d0"]
    if pid:
        params["pid"] = pid
    if store_id:
        params["store"] = store_id
    con = a.connect(location)
    try:
        rows = con.execute(_sql(metric, by, pid, store_id), params).fetchall()
    finally:
        con.close()
    out: dict[str, Series] = {}
    for key, t, count, title in rows:
        s = out.setdefault(str(key), Series(key=str(key), total=0, points=[0] * n, title=title))
        s.points[(int(t) - first) // size] += int(count)
        s.total += int(count)
    ranked = sorted(out.values(), key=lambda s: (-s.total, s.key))
    return first, n, ranked[:MAX_SERIES]

