"""Rankings shared by the live dashboard (``api/analytics.py``, over Redis minute buckets) and
the daily reports (``stream_apps/reports``, over the archive): the top share of products and the
products bought together. Pure: plain counters in, sorted lists out."""

from __future__ import annotations

import math
from collections import Counter

from instore import serving


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
