"""Writes the scenario files in this folder (run: python -m tests.scenarios.generate).

Positions are placed at exact distances (in metres, on a local frame around each store) so the
files say what they test: 99.9 ft is in, 100.1 ft is out. Times are fixed epoch milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instore.geo import LocalFrame

HERE = Path(__file__).resolve().parent
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FT = 0.3048
LONDON = LocalFrame(51.5072, -0.1276)
MANCHESTER = LocalFrame(53.4808, -2.2426)
POLICY = {"dwell_s": 2, "dwell_gap_s": 5, "cooldown_s": 1800, "cap_per_hour": 3}


def product(sku: int, x: float, y: float, store: str = "s1", segment: str = "coffee",
            frame: LocalFrame = LONDON) -> dict[str, Any]:
    lat, lon = frame.to_latlon(x, y)
    return {"sku": sku, "store_id": store, "segment": segment, "variant": None,
            "name": f"{segment} {sku}", "latitude": lat, "longitude": lon, "country": "GB"}


def promo(pid: str, sku: int | None = None, segment: str | None = None, radius_ft: float = 100,
          **extra: Any) -> dict[str, Any]:
    return {"pid": pid, "sku": sku, "segment": segment, "title": f"{pid} offer",
            "discount_pct": 15, "radius_ft": radius_ft} | extra


def consent(uid: str, opted_in: bool = True) -> dict[str, Any]:
    return {"uid": uid, "opted_in": opted_in, "channels": ["phone", "kiosk"], "updated_at": T0}


def pos(uid: str, x: float, y: float, ts: int, store: str | None = "s1",
        frame: LocalFrame = LONDON, phase: int = 0) -> dict[str, Any]:
    lat, lon = frame.to_latlon(x, y)
    value = {"uid": uid, "store_id": store, "latitude": lat, "longitude": lon, "country": "GB",
             "ts": ts, "source": "sim"}
    return {"topic": "customers_locations", "value": value, "phase": phase}


def dwell(uid: str, x: float, y: float, start: int, seconds: float, phase: int = 0,
          **kw: Any) -> list[dict[str, Any]]:
    """Positions every 500 ms for ``seconds`` at one spot."""
    return [pos(uid, x, y, start + i * 500, phase=phase, **kw) for i in range(int(seconds * 2) + 1)]


def near(uid: str, pid: str, store: str = "s1", count: int = 1) -> dict[str, Any]:
    return {"uid": uid, "pid": pid, "store_id": store, "count": count}


def scenarios() -> list[dict[str, Any]]:
    out = []
    out.append({
        "name": "radius_boundary",
        "description": "99.9 ft from the product is near, 100.1 ft is not (radius 100 ft)",
        "products": [product(1, 0, 0)],
        "promotions": [promo("p1", sku=1)],
        "consents": [consent("u1"), consent("u2")],
        "events": [pos("u1", 0, 99.9 * FT, T0), pos("u2", 0, 100.1 * FT, T0),
                   pos("u1", 99.9 * FT * 0.6, 99.9 * FT * 0.8, T0 + 500)],
        "expected_nearby": [near("u1", "p1", count=2)],
    })
    out.append({
        "name": "promotion_schedule",
        "description": "not yet started and expired promotions match nothing (starts_at <= t < ends_at)",
        "products": [product(1, 0, 0)],
        "promotions": [promo("p1", sku=1, starts_at=T0 + 10_000, ends_at=T0 + 20_000)],
        "consents": [],
        "events": [pos("u1", 0, 3, T0), pos("u1", 0, 3, T0 + 9_999), pos("u1", 0, 3, T0 + 10_000),
                   pos("u1", 0, 3, T0 + 15_000), pos("u1", 0, 3, T0 + 19_999),
                   pos("u1", 0, 3, T0 + 20_000), pos("u1", 0, 3, T0 + 25_000)],
        "expected_nearby": [near("u1", "p1", count=3)],
    })
    out.append({
        "name": "sku_vs_segment",
        "description": "a SKU promotion matches its SKU only; a segment promotion every product of the segment",
        "products": [product(1, 0, 0, segment="coffee"), product(2, 2, 0, segment="coffee"),
                     product(3, 4, 0, segment="tea")],
        "promotions": [promo("by-sku", sku=3, segment="coffee", radius_ft=50),
                       promo("by-seg", segment="coffee", radius_ft=50)],
        "consents": [],
        "events": [pos("u1", 2, 3, T0)],
        "expected_nearby": [near("u1", "by-seg"), near("u1", "by-seg"), near("u1", "by-sku")],
    })
    out.append({
        "name": "same_sku_two_stores",
        "description": "the same SKU in two stores far apart: a shopper is near only the product in their store",
        "products": [product(7, 0, 0, store="london"),
                     product(7, 0, 0, store="manchester", frame=MANCHESTER)],
        "promotions": [promo("p7", sku=7)],
        "consents": [],
        "events": [pos("u1", 0, 5, T0, store="manchester", frame=MANCHESTER),
                   pos("u2", 0, 5, T0, store="london")],
        "expected_nearby": [near("u1", "p7", store="manchester"), near("u2", "p7", store="london")],
    })
    out.append({
        "name": "consent_gates_offers",
        "description": "three shoppers dwell at the product; only the one who opted in gets an offer",
        "products": [product(1, 0, 0)],
        "promotions": [promo("p1", sku=1)],
        "consents": [consent("yes"), consent("no", opted_in=False)],
        "events": dwell("yes", 0, 2, T0, 3) + dwell("no", 0, 2, T0, 3) + dwell("never", 0, 2, T0, 3),
        "expected_nearby": [near("yes", "p1", count=7), near("no", "p1", count=7),
                            near("never", "p1", count=7)],
        "expected_offers": [{"uid": "yes", "pid": "p1"}],
    })
    products = [product(i, 20 * i, 0) for i in range(1, 6)]
    events = []
    for i in range(1, 6):  # five promoted products, a minute apart, 3 s at each
        events += dwell("u1", 20 * i, 1, T0 + (i - 1) * 60_000, 3)
    events += dwell("u1", 20, 1, T0 + 10 * 60_000, 3)  # back at the first: capped anyway
    events += dwell("u2", 20, 1, T0, 3) + dwell("u2", 20, 1, T0 + 10 * 60_000, 3)  # cooldown
    out.append({
        "name": "cooldown_and_hourly_cap",
        "description": "at most 3 offers per shopper per hour; no second offer for the same promotion within the cooldown",
        "products": products,
        "promotions": [promo(f"p{i}", sku=i, radius_ft=10) for i in range(1, 6)],
        "consents": [consent("u1"), consent("u2")],
        "events": events,
        "expected_nearby": [near("u1", f"p{i}", count=7) for i in range(1, 6)]
        + [near("u1", "p1", count=7), near("u2", "p1", count=14)],
        "expected_offers": [{"uid": "u1", "pid": "p1"}, {"uid": "u1", "pid": "p2"},
                            {"uid": "u1", "pid": "p3"}, {"uid": "u2", "pid": "p1"}],
    })
    lat91 = pos("bad1", 0, 1, T0)
    lat91["value"]["latitude"] = 91.0
    missing = pos("bad2", 0, 1, T0)
    del missing["value"]["longitude"]
    unknown = pos("bad3", 0, 1, T0, store="no-such-store")
    out.append({
        "name": "bad_input_dead_letters",
        "description": "malformed JSON, a missing field, latitude 91 and an unknown store go to dead_letters with the reason; valid positions keep flowing",
        "products": [product(1, 0, 0)],
        "promotions": [promo("p1", sku=1)],
        "consents": [],
        "events": [{"topic": "customers_locations", "key": "bad0", "raw": "{\"uid\": \"bad0\", "},
                   pos("ok", 0, 1, T0), missing, lat91, unknown, pos("ok", 0, 1, T0 + 500)],
        "expected_nearby": [near("ok", "p1", count=2)],
        "expected_dead_letters": [
            {"source_topic": "customers_locations", "error_contains": "invalid JSON"},
            {"source_topic": "customers_locations", "error_contains": "longitude"},
            {"source_topic": "customers_locations", "error_contains": "latitude"},
            {"source_topic": "customers_locations", "error_contains": "unknown store"},
        ],
    })
    out.append({
        "name": "promotion_tombstone",
        "description": "a withdrawn promotion (tombstone) stops matching and stops offers",
        "products": [product(1, 0, 0)],
        "promotions": [promo("p1", sku=1)],
        "consents": [consent("u1"), consent("u2")],
        "events": dwell("u1", 0, 2, T0, 3)
        + [{"topic": "products_promotions", "key": "p1", "value": None, "phase": 1}]
        + dwell("u2", 0, 2, T0 + 10_000, 3, phase=2),
        "expected_nearby": [near("u1", "p1", count=7)],
        "expected_offers": [{"uid": "u1", "pid": "p1"}],
    })
    out.append({
        "name": "position_without_store",
        "description": "a position with no store_id is placed in the store whose geofence holds it",
        "products": [product(1, 0, 0), product(2, 30, 20)],
        "promotions": [promo("p1", sku=1, radius_ft=25)],
        "consents": [],
        "events": [pos("u1", 1, 1, T0, store=None)],
        "expected_nearby": [near("u1", "p1")],
    })
    for s in out:
        s["policy"] = POLICY
    return out


def main() -> None:
    for s in scenarios():
        (HERE / f"{s['name']}.json").write_text(json.dumps(s, indent=1) + "\n")


if __name__ == "__main__":
    main()
