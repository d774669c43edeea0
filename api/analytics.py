"""Top products over a sliding window, read from the minute buckets the analytics agent
(``stream_apps/analytics.py``) writes: dwell seconds and redemptions per ``store_id:sku``."""

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
    last = now_ms // 1000 // serving.ANALYTICS_BUCKET_S
    count = max(1, math.ceil(window_s / serving.ANALYTICS_BUCKET_S))
    pipe = rds.pipeline(transaction=False)
    for bucket in range(last - count + 1, last + 1):
        pipe.zrange(BUCKET_KEY[metric](bucket), 0, -1, withscores=True)
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
