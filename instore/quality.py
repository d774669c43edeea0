"""Data quality as the archiver counts it (``stream_apps/archive/rows.py`` ``Quality``) and
everyone else reads it: dead letters per source topic and reason, their share of the topic's
records over the last DQ_WINDOW_S, late and out-of-order positions, and whether a topic is over
its threshold (DQ_MAX_DEAD_LETTER_SHARE, DQ_THRESHOLDS), which marks the stack degraded in
`instore status` and the API's /readyz."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from instore import serving
from instore.settings import Settings

BUCKET_TTL_S = 25 * 3600


def window_totals(rds: Any, now_ms: int, window_s: int) -> Counter[str]:
    """Sum of the per-minute counters over the last ``window_s`` (the current minute included)."""
    last = now_ms // 60_000
    first = last - max(1, window_s // 60) + 1
    pipe = rds.pipeline(transaction=False)
    for bucket in range(first, last + 1):
        pipe.hgetall(serving.quality(bucket))
    totals: Counter[str] = Counter()
    for raw in pipe.execute():
        for k, v in raw.items():
            totals[k.decode() if isinstance(k, bytes) else k] += int(v)
    return totals


def shares(totals: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per source topic: records, dead letters (per reason) and the dead letters' share."""
    out: dict[str, dict[str, Any]] = {}
    for name, n in totals.items():
        if name.startswith("records:"):
            out.setdefault(name.removeprefix("records:"), _empty())["records"] += n
        elif name.startswith("dead:"):
            topic, _, reason = name.removeprefix("dead:").partition(":")
            entry = out.setdefault(topic, _empty())
            entry["dead_letters"] += n
            entry["reasons"][reason] = entry["reasons"].get(reason, 0) + n
    for entry in out.values():
        records, dead = entry["records"], entry["dead_letters"]
        entry["dead_letter_share"] = dead / records if records else (1.0 if dead else 0.0)
    return out


def _empty() -> dict[str, Any]:
    return {"records": 0, "dead_letters": 0, "reasons": {}}


def report(settings: Settings, totals: Mapping[str, int]) -> dict[str, Any]:
    """The data-quality check: each topic's figures and threshold, late and out-of-order
    positions, and ``ok`` false with a one-line ``reason`` when a topic is over its threshold."""
    topics = shares(totals)
    over = []
    for topic, entry in sorted(topics.items()):
        entry["threshold"] = settings.dq_threshold(topic)
        entry["degraded"] = entry["dead_letters"] > 0 and entry["dead_letter_share"] > entry["threshold"]
        if entry["degraded"]:
            over.append(f"{topic} {entry['dead_letter_share']:.1%} > {entry['threshold']:.1%}")
    out: dict[str, Any] = {
        "ok": not over, "window_s": settings.dq_window_s, "topics": topics,
        "late_positions": int(totals.get("late", 0)),
        "out_of_order_positions": int(totals.get("out_of_order", 0)),
    }
    if over:
        out["reason"] = "dead letters over their threshold: " + ", ".join(over)
    return out


def check(settings: Settings, rds: Any, now_ms: int) -> dict[str, Any]:
    return report(settings, window_totals(rds, now_ms, settings.dq_window_s))


def add(pipe: Any, counts: Mapping[tuple[int, str], int]) -> None:
    """Queue per-minute increments on a Redis pipeline (each bucket expires after a day)."""
    for (bucket, name), n in counts.items():
        pipe.hincrby(serving.quality(bucket), name, n)
    for bucket in {b for b, _ in counts}:  # after the writes: EXPIRE of a missing key is a no-op
        pipe.expire(serving.quality(bucket), BUCKET_TTL_S)
