"""Top products and products bought together over a sliding window, read from the minute
buckets the analytics agents write: dwell seconds and redemptions per ``store_id:sku``
(``stream_apps/analytics.py``), shoppers per pair of products (``stream_apps/basket.py``).
The rankings themselves (``top_share``, ``top_pairs``) are ``instore.ranking``'s, shared with
the daily reports."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Literal

import redis

from instore import serving
from instore.ranking import top_pairs, top_share

__all__ = ["BUCKET_KEY", "Metric", "bucket_totals", "top_pairs", "top_share", "window_totals"]

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
