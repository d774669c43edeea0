"""Fuzzing the edge: every topic decoder and the agents' input path.

Every input ends as a record or a ``RecordError`` (a dead letter in the worker), never another
exception; a decoded position ends as NEARBY rows or one of the errors the proximity agent
turns into a dead letter; a decoded NEARBY row always gets a policy verdict.
The number of examples is bounded here; `instore bench fuzz` runs >= 100,000 per decoder.
"""

from __future__ import annotations

import math

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instore import topics as t
from instore.geo import GeoError
from instore.proximity import ProximityState, UnknownStore
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Promotion,
    RecordError,
    ShopperConsent,
    StoreProduct,
    decode,
    validate,
)
from stream_apps.policy import PolicyConfig, ShopperState, decide

MODELS = sorted({topic.record for topic in t.ALL}, key=lambda m: m.__name__)
EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FAR_FUTURE = 10**16
timestamps = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63), st.just(32_503_680_000_000),
    st.integers(32_503_679_000_000, 32_503_680_000_001), st.just(-1), st.just(0),
    st.just(FAR_FUTURE),
)
coords = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.just(math.nan), st.just(math.inf),
    st.just(-math.inf), st.just(90.0), st.just(-180.0), st.just(1e308),
    st.floats(min_value=-90, max_value=90),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.text(alphabet=st.characters(codec="utf-8"), min_size=200,
                                  max_size=400),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "\u0000", "\ud7ff", "phone"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                       inner, max_size=4),
    max_leaves=20,
)


def field_names(model: type) -> list[str]:
    return list(model.model_fields)  # type: ignore[attr-defined]


def valid_value(name: str) -> object:
    return {
        "uid": "u1", "store_id": "s1", "latitude": 51.5, "longitude": -0.12, "sku": 1,
        "segment": "coffee", "name": "Beans", "pid": "p1", "title": "10% off",
        "discount_pct": 10, "radius_ft": 100, "kiosk_id": "k1", "action": "tap",
        "opted_in": True, "channels": ["phone"], "updated_at": 1, "ts": 1, "distance_ft": 3.0,
        "product_latitude": 51.5, "product_longitude": -0.12, "offer_id": "o1", "event":
        "opened", "expires_at": 2, "source_topic": "x", "error": "e", "source": "phone",
        "accuracy_m": 3.0, "partition": 0, "offset": 1, "starts_at": 0, "ends_at": 10**13,
    }.get(name, "x")


@st.composite
def near_valid_objects(draw: st.DrawFn, model: type) -> dict[str, object]:
    """A record of ``model`` with valid values, then some fields replaced by hostile ones."""
    names = field_names(model)
    obj: dict[str, object] = {n: valid_value(n) for n in names}
    for name in draw(st.lists(st.sampled_from(names), max_size=4)):
        if name in ("latitude", "longitude", "product_latitude", "product_longitude",
                    "distance_ft", "discount_pct", "radius_ft", "accuracy_m"):
            obj[name] = draw(coords | json_values)
        elif name in ("ts", "updated_at", "expires_at", "starts_at", "ends_at"):
            obj[name] = draw(timestamps | json_values)
        else:
            obj[name] = draw(json_values)
    if draw(st.booleans()):
        obj[draw(st.text(max_size=10))] = draw(json_values)
    return obj


def dumps(obj: object) -> bytes:
    """JSON text even for NaN/Infinity and out-of-range ints (what a careless producer writes)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        import json

        return json.dumps(obj, allow_nan=True, default=str).encode()


def assert_record_or_error(model: type, raw: bytes | str | None) -> object | None:
    try:
        return decode(model, raw)
    except RecordError as exc:
        assert exc.reason and len(exc.reason) < 2000
        return None


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@EXAMPLES
@given(model=st.sampled_from(MODELS), raw=st.binary(max_size=300))
def test_random_bytes(model: type, raw: bytes) -> None:
    assert_record_or_error(model, raw)


@EXAMPLES
@given(model=st.sampled_from(MODELS), value=json_values)
def test_any_json_value(model: type, value: object) -> None:
    assert_record_or_error(model, dumps(value))
    try:
        validate(model, value)
    except RecordError:
        pass


@EXAMPLES
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_hostile_fields(data: st.DataObject, model: type) -> None:
    obj = data.draw(near_valid_objects(model))
    assert_record_or_error(model, dumps(obj))
    try:  # the same object without a JSON round trip (NaN and huge ints stay as they are)
        validate(model, obj)
    except RecordError:
        pass


@EXAMPLES
@given(model=st.sampled_from(MODELS), depth=st.integers(1, 200_000),
       kind=st.sampled_from(["list", "dict"]))
def test_deeply_nested(model: type, depth: int, kind: str) -> None:
    assert_record_or_error(model, nested(depth, kind))


@settings(max_examples=20, deadline=None)
@given(model=st.sampled_from(MODELS), size=st.integers(1_000, 3_000_000))
def test_huge_values(model: type, size: int) -> None:
    obj = {n: valid_value(n) for n in field_names(model)}
    obj["uid" if "uid" in obj else next(iter(obj))] = "x" * size
    assert_record_or_error(model, orjson.dumps(obj))
    assert_record_or_error(model, orjson.dumps({"k": list(range(size // 10))}))


@EXAMPLES
@given(model=st.sampled_from(MODELS), text=st.text(max_size=200))
def test_unicode_text(model: type, text: str) -> None:
    assert_record_or_error(model, text)
    assert_record_or_error(model, text.encode("utf-8", errors="surrogatepass"))


# The agents' input path ---------------------------------------------------------------------


def small_catalog() -> ProximityState:
    state = ProximityState()
    for i in range(5):
        state.upsert_product(StoreProduct(sku=i, store_id="s1", segment="coffee", name=f"p{i}",
                                          latitude=51.5 + i * 1e-5, longitude=-0.12,
                                          country="GB"))
    state.upsert_product(StoreProduct(sku=9, store_id="s2", segment="tea", name="t",
                                      latitude=-33.9, longitude=151.2, country="AU"))
    state.upsert_promotion(Promotion(pid="p1", sku=1, title="t", discount_pct=10))
    state.upsert_promotion(Promotion(pid="p2", segment="tea", title="t", discount_pct=5,
                                     starts_at=0, ends_at=32_503_680_000_000))
    return state


STATE = small_catalog()


@EXAMPLES
@given(data=st.data())
def test_proximity_path(data: st.DataObject) -> None:
    """decode -> match_rows: valid NEARBY rows, or an error the agent dead-letters."""
    obj = data.draw(near_valid_objects(CustomerLocation))
    raw = data.draw(st.sampled_from([dumps(obj), data.draw(st.binary(max_size=80))]))
    fallback_ts = data.draw(st.integers(0, 32_503_680_000_000))
    try:
        pos = decode(CustomerLocation, raw)
        ts = pos.ts if pos.ts is not None else fallback_ts
        rows = STATE.match_rows(pos, ts)
    except (RecordError, UnknownStore, GeoError):
        return
    for row in rows:
        decode(NearbyCustomer, orjson.dumps(row))


@EXAMPLES
@given(data=st.data())
def test_policy_path(data: st.DataObject) -> None:
    """decode -> decide: always a verdict; an offer is a valid record for a consenting shopper."""
    obj = data.draw(near_valid_objects(NearbyCustomer))
    if data.draw(st.booleans()):
        obj["ts"] = data.draw(timestamps)
    obj["pid"] = data.draw(st.sampled_from(["p1", "p2", obj.get("pid")]))
    row = assert_record_or_error(NearbyCustomer, dumps(obj))
    if row is None:
        return
    assert isinstance(row, NearbyCustomer)
    consent = data.draw(st.sampled_from([
        None, ShopperConsent(uid=row.uid, opted_in=True, updated_at=0),
        ShopperConsent(uid=row.uid, opted_in=False, updated_at=0),
    ]))
    cfg = PolicyConfig(dwell_s=data.draw(st.sampled_from([0.0, 5.0])), cooldown_s=0)
    state = ShopperState.from_dict({"near": {row.pid: [row.ts - 10_000, row.ts]}})
    verdict, offer = decide(row, state, consent, STATE.promotions.get(row.pid), cfg)
    assert isinstance(verdict, str)
    if offer is not None:
        assert consent is not None and consent.opted_in
        decode(type(offer), offer.to_json())


@EXAMPLES
@given(ts=timestamps, pid=st.sampled_from(["p1", "p2"]), dwell=st.sampled_from([0.0, 5.0]))
def test_policy_at_extreme_times(ts: int, pid: str, dwell: float) -> None:
    """A consenting shopper at any accepted time (up to year 3000): a verdict, never a crash."""
    obj = {n: valid_value(n) for n in field_names(NearbyCustomer)} | {"ts": ts, "pid": pid}
    row = assert_record_or_error(NearbyCustomer, dumps(obj))
    if row is None:
        return
    assert isinstance(row, NearbyCustomer)
    state = ShopperState.from_dict({"near": {pid: [row.ts - 10_000, row.ts]}})
    consent = ShopperConsent(uid=row.uid, opted_in=True, updated_at=0)
    verdict, offer = decide(row, state, consent, STATE.promotions[pid], PolicyConfig(dwell_s=dwell))
    assert verdict in ("offer", "dwelling", "inactive")
    if offer is not None:
        decode(type(offer), offer.to_json())
