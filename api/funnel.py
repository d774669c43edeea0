"""Funnel figures from the serving store's counters, and a promotion's schedule status."""

from __future__ import annotations

from typing import Literal, cast

import redis

from api.models import Funnel
from instore import serving
from instore.records import Promotion


def hash_of(rds: redis.Redis, key: str) -> dict[str, str]:
    """A Redis hash as text (the API's client decodes responses)."""
    return cast(dict[str, str], rds.hgetall(key))


STAGES = ("delivered", "opened", "redeemed")


def funnel_of(counters: dict[str, str]) -> Funnel:
    """The funnel of one counters hash: nearby and sent as counted, each later stage the offers
    that reached it or a later one (``serving.reached``; stream_apps/funnel.py), so delivered >=
    opened >= redeemed."""
    values = {f: int(counters.get(f, 0) or 0) for f in ("nearby", "sent")}
    values |= {s: int(counters.get(serving.reached(s), 0) or 0) for s in STAGES}
    sent = values["sent"]
    return Funnel(**values,
                  open_rate=round(values["opened"] / sent, 4) if sent else None,
                  conversion=round(values["redeemed"] / sent, 4) if sent else None)


def funnels(rds: redis.Redis, keys: list[str]) -> list[Funnel]:
    if not keys:
        return []
    pipe = rds.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return [funnel_of(c) for c in pipe.execute()]


def status_of(promo: Promotion, now_ms: int) -> Literal["scheduled", "active", "expired"]:
    if promo.starts_at is not None and now_ms < promo.starts_at:
        return "scheduled"
    if promo.ends_at is not None and now_ms >= promo.ends_at:
        return "expired"
    return "active"
