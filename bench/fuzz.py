"""`instore bench fuzz`: a long random run over every topic decoder and the agents' input path.

The hypothesis fuzzers in tests/unit/test_fuzz_decoders.py run a bounded number of examples in
`make test`; this runs >= 100,000 inputs per decoder with a fast seeded generator of the same
kinds of input (random bytes, wrong types, NaN/Infinity coordinates, huge and deeply nested
JSON, unicode, negative and far-future timestamps, mutations of valid records). Every input must
end as a record or a ``RecordError``; anything else is a crash, counted with its type.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from instore import results
from instore import topics as t
from instore.geo import GeoError
from instore.proximity import ProximityState, UnknownStore
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Promotion,
    Record,
    RecordError,
    ShopperConsent,
    StoreProduct,
    decode,
)
from instore.results import time_left
from stream_apps.policy import PolicyConfig, ShopperState, decide

RESULTS = Path(__file__).resolve().parent / "results" / "fuzz.jsonl"

VALID: dict[str, Any] = {
    "uid": "u1", "store_id": "s1", "latitude": 51.5, "longitude": -0.12, "sku": 1,
    "segment": "coffee", "name": "Beans", "pid": "p1", "title": "10% off", "discount_pct": 10,
    "radius_ft": 100, "kiosk_id": "k1", "action": "tap", "opted_in": True,
    "channels": ["phone"], "updated_at": 1, "ts": 1_767_225_600_000, "distance_ft": 3.0,
    "product_latitude": 51.5, "product_longitude": -0.12, "offer_id": "o1", "event": "opened",
    "expires_at": 1_767_225_700_000, "source_topic": "x", "error": "e", "country": "GB",
    "source": "phone", "accuracy_m": 3.0, "partition": 0, "offset": 1, "starts_at": 0,
    "ends_at": 32_503_680_000_000, "variant": "a", "raw": "{}",
}
HOSTILE_NUMBERS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 2**63, -(2**63), 2**200, -1, 0,
                   32_503_680_000_000, 32_503_680_000_001, 10**16, 90.0000001, -180.0000001]
HOSTILE_TEXT = ["", "NaN", "Infinity", "-Infinity", "1e999", "\u0000", "\U0001f600" * 50,
                "\u202e\u0301", "x" * 70_000, "null", "true", "[]", "{}"]


class Generator:
    """Seeded hostile inputs for one model."""

    def __init__(self, model: type[Record], seed: int) -> None:
        self.model = model
        self.rng = random.Random(seed)
        self.fields = list(model.model_fields)
        self.kinds: list[Callable[[], bytes | str | None]] = [
            self.random_bytes, self.mutated, self.mutated, self.mutated, self.wrong_types,
            self.any_json, self.nested, self.unicode, self.text_mutation, self.none_or_empty,
        ]

    def __call__(self) -> bytes | str | None:
        if self.rng.random() < 0.0005:
            return self.huge()
        return self.rng.choice(self.kinds)()

    def scalar(self) -> Any:
        r = self.rng
        k = r.randrange(8)
        if k == 0:
            return None
        if k == 1:
            return r.random() < 0.5
        if k == 2:
            return r.getrandbits(72) - 2**71
        if k == 3:
            return (r.random() - 0.5) * 2e6
        if k == 4:
            return r.choice(HOSTILE_NUMBERS)
        if k == 5:
            return r.choice(HOSTILE_TEXT)
        if k == 6:
            return self.unicode()[:12]
        return r.randbytes(r.randrange(16)).decode("latin-1")

    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 3 or r < 0.6:
            return self.scalar()
        if r < 0.8:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        n = self.rng.randint(0, 4)
        return {str(self.scalar())[:8]: self.value(depth + 1) for _ in range(n)}

    def valid(self) -> dict[str, Any]:
        return {f: VALID.get(f, "x") for f in self.fields}

    def dumps(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            return json.dumps(obj, allow_nan=True, default=str).encode()

    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, 200))

    def mutated(self) -> bytes:
        obj = self.valid()
        for _ in range(self.rng.randint(1, 3)):
            name = self.rng.choice([*self.fields, "extra"])
            obj[name] = self.rng.choice([self.scalar(), self.rng.choice(HOSTILE_NUMBERS),
                                         self.value()])
        if self.rng.random() < 0.2:
            obj.pop(self.rng.choice(self.fields), None)
        return self.dumps(obj)

    def wrong_types(self) -> bytes:
        return self.dumps({f: self.value() for f in self.fields})

    def any_json(self) -> bytes:
        return self.dumps(self.value())

    def nested(self) -> bytes:
        depth = self.rng.choice([10, 200, 1024, 1025, 5000, 20_000])
        if self.rng.random() < 0.5:
            return b"[" * depth + b"]" * depth
        return b'{"uid":' * depth + b"1" + b"}" * depth

    def unicode(self) -> str:
        raw = self.rng.randbytes(4 * self.rng.randrange(1, 40))
        return raw.decode("utf-32-le", errors="replace").replace("\x00", "")

    def text_mutation(self) -> bytes:
        raw = bytearray(self.dumps(self.valid()))
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randrange(len(raw))
            raw[i] = self.rng.randrange(256)
        return bytes(raw)

    def none_or_empty(self) -> bytes | None:
        return self.rng.choice([None, b"", b"null", b"NaN", b'{"latitude": NaN}', b"{}"])

    def huge(self) -> bytes:
        obj = self.valid()
        obj[self.rng.choice(self.fields)] = "x" * self.rng.randint(100_000, 1_000_000)
        return self.dumps(obj)


def catalog() -> ProximityState:
    state = ProximityState()
    for i in range(5):
        state.upsert_product(StoreProduct(sku=i, store_id="s1", segment="coffee", name=f"p{i}",
                                          latitude=51.5 + i * 1e-5, longitude=-0.12, country="GB"))
    state.upsert_promotion(Promotion(pid="p1", sku=1, title="10% off", discount_pct=10))
    return state


def run(per_decoder: int = 100_000, seed: int = 1,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    models = sorted({topic.record for topic in t.ALL}, key=lambda m: m.__name__)
    state = catalog()
    cfg = PolicyConfig(dwell_s=0, cooldown_s=0)
    consent = ShopperConsent(uid="u1", opted_in=True, updated_at=0)
    crashes: Counter[str] = Counter()
    per_model: dict[str, dict[str, int]] = {}
    agent: Counter[str] = Counter()
    started = time.perf_counter()
    for n_model, model in enumerate(models):
        gen = Generator(model, seed * 1000 + n_model)
        counts = Counter[str]()
        for _ in range(per_decoder):
            raw = gen()
            try:
                rec = decode(model, raw)
            except RecordError:
                counts["errors"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - a crash is what we count
                counts["crashes"] += 1
                crashes[f"{model.__name__}:{type(exc).__name__}"] += 1
                continue
            counts["records"] += 1
            try:
                if isinstance(rec, CustomerLocation):
                    try:
                        rows = state.match_rows(rec, rec.ts if rec.ts is not None else 0)
                        agent["positions_matched"] += 1
                        agent["nearby_rows"] += len(rows)
                    except (UnknownStore, GeoError):
                        agent["positions_dead_lettered_or_outside"] += 1
                elif isinstance(rec, NearbyCustomer):
                    shopper = ShopperState.from_dict({"near": {rec.pid: [rec.ts - 1, rec.ts]}})
                    verdict, _offer = decide(rec, shopper, consent,
                                             state.promotions.get(rec.pid), cfg)
                    agent[f"policy:{verdict}"] += 1
            except Exception as exc:  # noqa: BLE001
                counts["crashes"] += 1
                crashes[f"agent:{model.__name__}:{type(exc).__name__}"] += 1
        per_model[model.__name__] = dict(counts)
        if progress:
            done = len(per_model)
            progress(f"{model.__name__}: {per_decoder:,} inputs, {counts['records']:,} records, "
                     f"{counts['errors']:,} dead letters, {counts['crashes']} crashes; "
                     f"{time_left(done, len(models), started)}")
    elapsed = time.perf_counter() - started
    total = per_decoder * len(models)
    fig: dict[str, Any] = {
        "bench": "fuzz", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "decoders": len(models), "inputs_per_decoder": per_decoder, "inputs": total,
        "records": sum(c.get("records", 0) for c in per_model.values()),
        "dead_letters": sum(c.get("errors", 0) for c in per_model.values()),
        "crashes": sum(crashes.values()), "crash_kinds": dict(crashes),
        "agent_path": dict(agent), "inputs_per_s": round(total / elapsed), "seconds":
        round(elapsed, 1), "seed": seed,
    }
    return results.append("fuzz", fig, path=RESULTS)
