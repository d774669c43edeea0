"""Top products and products bought together over a sliding window, read from the minute
buckets the analytics agents write: dwell seconds and redemptions per ``store_id:sku``
(``stream_apps/analytics.py``), shoppers per pair of products (``stream_apps/basket.py``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Literal

import redis

from instore import serving

Metric = Literal["dwell", "redemptions"]
BUCKET_KEY: dict[str, Callable[[int], str]] = {
    "dwell": serving.analytics_dwell,
    "redemptions": serving.analytics_redemptions,
}


def window_totals(rds: redis.Redis, metric: Metric, window_s: int, now_ms: int) -> Counter[str]:
    """Sum of the metric per ``store_id:sku`` over the minute buckets covering the window."""
    return bucket_totals(rds, BUCKET_KEY[metric], window_s, now_ms)


def bucket_totals(rds: redis.Redis, key_of: Callable[[int], str], window_s: int,
                  now_ms: int) -> Counter[str]:
    """Sum per member of the minute-bucket sorted sets ``key_of(bucket)`` covering the window."""
    last = now_ms // 1000 // serving.ANALYTICS_BUCKET_S
    count = max(1, math.ceil(window_s / serving.ANALYTICS_BUCKET_S))
    pipe = rds.pipeline(transaction=False)
    for bucket in range(last - count + 1, last + 1):
        pipe.zrange(key_of(bucket), 0, -1, withscores=True)
    totals: Counter[str] = Counter()
    for rows in pipe.execute():
        for member, score in rows:
            totals[member] += score
    return totals


def top_share(totals: Counter[str], share: float = 0.10) -> list[tuple[str, float]]:
    """The top ``share`` of items by value (at least one when there is any), best first."""
    items: list[tuple[str, float]] = [(k, float(v)) for k, v in totals.items() if v > 0]
    if not items:
        return []
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return items[: max(1, math.ceil(len(items) * share))]


def top_pairs(totals: Counter[str], store_id: str | None = None, sku: int | None = None,
              limit: int = 10) -> tuple[int, list[tuple[str, int, int, int]]]:
    """Pairs (``serving.basket_pair`` members) matching the store and/or SKU, best first:
    (how many matched, [(store_id, low_sku, high_sku, shoppers), ...][:limit])."""
    rows = []
    for member, value in totals.items():
        parsed = serving.parse_basket_pair(member)
        if parsed is None or value <= 0:
            continue
        sid, low, high = parsed
        if store_id is not None and sid != store_id:
            continue
        if sku is not None and sku not in (low, high):
            continue
        rows.append((sid, low, high, round(value)))
    rows.sort(key=lambda row: (-row[3], row[0], row[1], row[2]))
    return len(rows), rows[:limit]
