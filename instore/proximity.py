"""The proximity rule (DESIGN.md), over a per-store spatial index. Pure: no I/O.

A position of shopper ``uid`` in store ``s`` at time ``t`` is NEAR product ``p`` for promotion ``q``
when ``p.store_id == s``; ``q.sku == p.sku`` or (``q.sku`` is null and ``q.segment == p.segment``);
``q.starts_at <= t < q.ends_at``; and ``haversine(e, p) * 3280.8399 <= q.radius_ft``.

``ProximityState`` holds the catalog and promotions as the compacted topics deliver them
(upserts and tombstones) and answers ``match(position)`` through a grid index per store that
holds only promoted products, so the work per position grows with the promoted products near
the shopper, not with the catalog.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TypedDict

import orjson

from instore import topics as t
from instore.errors import InstoreError
from instore.geo import GridIndex, LocalFrame, distance_ft
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Promotion,
    RecordError,
    StoreProduct,
    decode,
)


@dataclass(frozen=True, slots=True)
class Product:
    sku: int
    store_id: str
    segment: str
    latitude: float
    longitude: float
    country: str | None

    @classmethod
    def of(cls, p: StoreProduct) -> Product:
        return cls(p.sku, p.store_id, p.segment, p.latitude, p.longitude, p.country)


@dataclass(frozen=True, slots=True)
class Geofence:
    store_id: str
    frame: LocalFrame
    radius_m: float

    def holds(self, lat: float, lon: float) -> bool:
        x, y = self.frame.to_xy(lat, lon)
        return math.hypot(x, y) <= self.radius_m


# starts_at, ends_at, row part when the position has a country, row part with the product's
_Fragment = tuple[int | None, int | None, bytes, bytes]
# one match: store_id, pid, sku, distance_ft, the serialized NEARBY_CUSTOMERS value
Hit = tuple[str, str, int, float, bytes]


class NearbyRow(TypedDict):
    """A NEARBY_CUSTOMERS value as a plain dict (same fields as NearbyCustomer)."""

    uid: str
    store_id: str
    pid: str
    sku: int
    segment: str
    distance_ft: float
    latitude: float
    longitude: float
    product_latitude: float
    product_longitude: float
    country: str | None
    ts: int


class UnknownStore(InstoreError, LookupError):
    pass


class ProximityState:
    def __init__(self, geofence_margin_m: float = 30.0) -> None:
        self.products: dict[str, dict[int, Product]] = defaultdict(dict)
        self.by_segment: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        self.promotions: dict[str, Promotion] = {}
        self.geofence_margin_m = geofence_margin_m
        self._index: dict[str, GridIndex[tuple[str, int]]] = {}
        self._dirty: set[str] = set()
        self._all_dirty = False
        self._geofences: dict[str, Geofence] | None = None
        self._fragments: dict[str, dict[tuple[str, int], _Fragment]] = {}

    # Updates from the compacted topics --------------------------------------------------
    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """One record of the catalog's compacted topics (``stores_products``,
        ``products_promotions``): upsert, or delete on a tombstone; RecordError if it is
        neither. Records of other topics are ignored."""
        k = key.decode("utf-8", errors="replace") if key is not None else None
        if topic == t.STORES_PRODUCTS.name:
            if value is None:
                store_id, _, sku = (k or "").rpartition(":")
                if not store_id or not sku.isdigit():
                    reason = "tombstone with a key that is not store_id:sku"
                    raise RecordError(reason)
                self.delete_product(store_id, int(sku))
            else:
                self.upsert_product(decode(StoreProduct, value))
        elif topic == t.PRODUCTS_PROMOTIONS.name:
            if value is None:
                if k is None:
                    reason = "promotion tombstone without a key"
                    raise RecordError(reason)
                self.delete_promotion(k)
            else:
                self.upsert_promotion(decode(Promotion, value))

    def upsert_product(self, p: StoreProduct) -> None:
        store = self.products[p.store_id]
        old = store.get(p.sku)
        if old is not None:
            self.by_segment[p.store_id][old.segment].discard(p.sku)
        store[p.sku] = Product.of(p)
        self.by_segment[p.store_id][p.segment].add(p.sku)
        self._dirty.add(p.store_id)
        self._geofences = None

    def delete_product(self, store_id: str, sku: int) -> None:
        old = self.products.get(store_id, {}).pop(sku, None)
        if old is not None:
            self.by_segment[store_id][old.segment].discard(sku)
            self._dirty.add(store_id)
            self._geofences = None

    def upsert_promotion(self, q: Promotion) -> None:
        self.promotions[q.pid] = q
        self._all_dirty = True

    def delete_promotion(self, pid: str) -> None:
        if self.promotions.pop(pid, None) is not None:
            self._all_dirty = True

    # Queries -------------------------------------------------------------------------------
    @property
    def stores(self) -> list[str]:
        return [s for s, prods in self.products.items() if prods]

    def geofences(self) -> dict[str, Geofence]:
        """Each store's fence: the circle around its products' centroid, plus a margin."""
        if self._geofences is None:
            fences = {}
            for store_id, prods in self.products.items():
                if not prods:
                    continue
                lat0 = sum(p.latitude for p in prods.values()) / len(prods)
                lon0 = sum(p.longitude for p in prods.values()) / len(prods)
                frame = LocalFrame(lat0, lon0)
                extent = max(math.hypot(*frame.to_xy(p.latitude, p.longitude)) for p in prods.values())
                fences[store_id] = Geofence(store_id, frame, extent + self.geofence_margin_m)
            self._geofences = fences
        return self._geofences

    def locate_store(self, lat: float, lon: float) -> str | None:
        for store_id, fence in self.geofences().items():
            if fence.holds(lat, lon):
                return store_id
        return None

    def _promoted_in(self, store_id: str) -> list[tuple[tuple[str, int], float, float, float]]:
        prods = self.products.get(store_id, {})
        segments = self.by_segment.get(store_id, {})
        points = []
        for q in self.promotions.values():
            if q.sku is not None:
                skus: set[int] | tuple[int, ...] = (q.sku,) if q.sku in prods else ()
            else:
                skus = segments.get(q.segment or "", set())
            for sku in skus:
                p = prods[sku]
                points.append(((q.pid, sku), p.latitude, p.longitude, q.radius_ft))
        return points

    def index_for(self, store_id: str) -> GridIndex[tuple[str, int]]:
        if self._all_dirty:
            self._index.clear()
            self._fragments.clear()
            self._dirty.clear()
            self._all_dirty = False
        elif store_id in self._dirty:
            self._index.pop(store_id, None)
            self._fragments.pop(store_id, None)
            self._dirty.discard(store_id)
        index = self._index.get(store_id)
        if index is None:
            index = GridIndex.build(self._promoted_in(store_id))
            self._index[store_id] = index
        return index

    def resolve_store(self, pos: CustomerLocation) -> str:
        if pos.store_id is not None:
            if not self.products.get(pos.store_id):
                msg = f"unknown store {pos.store_id!r}"
                raise UnknownStore(msg)
            return pos.store_id
        store_id = self.locate_store(pos.latitude, pos.longitude)
        if store_id is None:
            msg = "position is outside every store's geofence"
            raise UnknownStore(msg)
        return store_id

    def match_rows(self, pos: CustomerLocation, ts: int) -> list[NearbyRow]:
        """Every NEARBY_CUSTOMERS value for this position, as dicts (raises UnknownStore)."""
        store_id = self.resolve_store(pos)
        promotions = self.promotions
        products = self.products[store_id]
        lat, lon = pos.latitude, pos.longitude
        rows = []
        for (pid, sku), d_ft in self.index_for(store_id).within(lat, lon):
            if not promotions[pid].active_at(ts):
                continue
            rows.append(nearby_row(pos.uid, store_id, lat, lon, pos.country, ts, pid,
                                   products[sku], d_ft))
        return rows

    def match_json(self, pos: CustomerLocation, ts: int) -> list[bytes]:
        """The same rows as ``match_rows``, serialized."""
        return [hit[4] for hit in self.match_hits(pos, ts)]

    def match_hits(self, pos: CustomerLocation, ts: int) -> list[Hit]:
        """The worker's hot path: ``(store_id, pid, sku, distance_ft, row)`` per match, where
        ``row`` is the serialized NEARBY_CUSTOMERS value: the position's part, the distance,
        and the (promotion, product) part cached per store (raises UnknownStore)."""
        store_id = self.resolve_store(pos)
        hits = self.index_for(store_id).within(pos.latitude, pos.longitude)
        if not hits:
            return []
        frags = self._fragments.get(store_id)
        if frags is None:
            frags = self._fragments[store_id] = {}
        own_country = pos.country is not None
        head: dict[str, object] = {"uid": pos.uid, "store_id": store_id,
                                   "latitude": pos.latitude, "longitude": pos.longitude, "ts": ts}
        if own_country:
            head["country"] = pos.country
        prefix = orjson.dumps(head)[:-1] + b',"distance_ft":'
        dumps = orjson.dumps
        out = []
        for key, d_ft in hits:
            frag = frags.get(key)
            if frag is None:
                frag = frags[key] = self._fragment(store_id, key)
            starts, ends, with_pos_country, with_product_country = frag
            if (starts is not None and ts < starts) or (ends is not None and ts >= ends):
                continue
            out.append((store_id, key[0], key[1], d_ft,
                        prefix + dumps(d_ft) + (with_pos_country if own_country
                                                else with_product_country)))
        return out

    def match_hits_naive(self, pos: CustomerLocation, ts: int) -> list[Hit]:
        """``match_hits`` through the seed demo's scan (the benchmark's baseline)."""
        return [(row["store_id"], row["pid"], row["sku"], row["distance_ft"], orjson.dumps(row))
                for row in self.match_rows_naive(pos, ts)]

    def _fragment(self, store_id: str, key: tuple[str, int]) -> _Fragment:
        """The promotion's schedule and the row's (promotion, product) part, serialized once."""
        pid, sku = key
        p = self.products[store_id][sku]
        q = self.promotions[pid]
        body = {"pid": pid, "sku": p.sku, "segment": p.segment,
                "product_latitude": p.latitude, "product_longitude": p.longitude}
        with_pos_country = b"," + orjson.dumps(body)[1:]
        with_product_country = b"," + orjson.dumps(body | {"country": p.country})[1:]
        return q.starts_at, q.ends_at, with_pos_country, with_product_country

    def match(self, pos: CustomerLocation, ts: int) -> list[NearbyCustomer]:
        """Every NEARBY_CUSTOMERS row for this position, as records (raises UnknownStore)."""
        return [NearbyCustomer.model_validate(row) for row in self.match_rows(pos, ts)]

    def _country_candidates(self) -> dict[str | None, list[tuple[str, str, Product, float]]]:
        if getattr(self, "_naive_built", None) is not self._index_version():
            by_country: dict[str | None, list[tuple[str, str, Product, float]]] = defaultdict(list)
            for store_id in self.stores:
                for (pid, sku), _lat, _lon, radius_ft in self._promoted_in(store_id):
                    p = self.products[store_id][sku]
                    by_country[p.country].append((pid, store_id, p, radius_ft))
            self._naive = by_country
            self._naive_built = self._index_version()
        return self._naive

    def _index_version(self) -> tuple[int, int]:
        return (sum(len(v) for v in self.products.values()), len(self.promotions))

    def match_rows_naive(self, pos: CustomerLocation, ts: int) -> list[NearbyRow]:
        """The seed demo's approach: scan every promoted product in the position's country.

        Same rule and same rows as ``match_rows``; only the candidate set differs (baseline).
        """
        store_id = self.resolve_store(pos)
        lat, lon = pos.latitude, pos.longitude
        rows = []
        candidates = self._country_candidates()
        country = pos.country if pos.country is not None else None
        pool = candidates.get(country) if country is not None else None
        if pool is None:
            pool = [c for cs in candidates.values() for c in cs]
        for pid, p_store, p, radius_ft in pool:
            d_ft = distance_ft(lat, lon, p.latitude, p.longitude)
            if d_ft <= radius_ft and p_store == store_id and self.promotions[pid].active_at(ts):
                rows.append(nearby_row(pos.uid, store_id, lat, lon, pos.country, ts, pid, p, d_ft))
        return rows

    def brute_force(self, pos: CustomerLocation, ts: int) -> list[tuple[str, int, float]]:
        """The rule by a full scan of every product and promotion (tests and --naive)."""
        store_id = self.resolve_store(pos)
        out = []
        for q in self.promotions.values():
            if not q.active_at(ts):
                continue
            for p in self.products[store_id].values():
                if (q.sku == p.sku) or (q.sku is None and q.segment == p.segment):
                    d = distance_ft(pos.latitude, pos.longitude, p.latitude, p.longitude)
                    if d <= q.radius_ft:
                        out.append((q.pid, p.sku, d))
        return out


def nearby_row(uid: str, store_id: str, lat: float, lon: float, country: str | None, ts: int,
               pid: str, product: Product, d_ft: float) -> NearbyRow:
    """A NEARBY_CUSTOMERS value as a plain dict (the hot path; same fields as NearbyCustomer)."""
    return {
        "uid": uid, "store_id": store_id, "pid": pid, "sku": product.sku,
        "segment": product.segment, "distance_ft": d_ft, "latitude": lat, "longitude": lon,
        "product_latitude": product.latitude, "product_longitude": product.longitude,
        "country": country if country is not None else product.country, "ts": ts,
    }
