"""The spatial FILTER plan (grid index) and the fused EXPLODE give exactly the rows, in the same
order and with the same distance bits, as the plain evaluation of the same SQL."""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.expressions import PSEUDO, Compiler, Scope, Slot
from stream_apps.ksqldb.functions import geo_distance
from stream_apps.ksqldb.spatial import SpatialFilter
from stream_apps.ksqldb.testing import MemoryEngine

FILTER_SQL = (
    "SELECT FILTER(PTS, x => GEO_DISTANCE(LAT, LON, x->LAT, x->LON, 'km') * 3280.8399 "
    "<= x->R AND (x->T IS NULL OR x->T <= TS)) AS F FROM S;"
)


def _compile_filter() -> tuple[object, object]:
    (stmt,) = sx.parse(FILTER_SQL)
    assert isinstance(stmt, sx.Query) and stmt.select is not None
    expr = stmt.select.items[0].expr
    cols = {
        "LAT": sx.DOUBLE,
        "LON": sx.DOUBLE,
        "TS": sx.BIGINT,
        "PTS": sx.SqlType("ARRAY", (sx.SqlType("STRUCT", (
            ("LAT", sx.DOUBLE), ("LON", sx.DOUBLE), ("R", sx.DOUBLE), ("T", sx.BIGINT))),)),
    } | PSEUDO
    comp = Compiler(Scope([Slot("S", "S", cols)]))
    fn = comp.compile(expr)
    return fn, getattr(fn, "inner", None)


def _naive(row: dict, pts: list[dict]) -> list[dict]:
    out = []
    for x in pts:
        d = geo_distance(row["LAT"], row["LON"], x["LAT"], x["LON"], "km")
        if d is None or x["R"] is None:
            continue
        if d * 3280.8399 <= x["R"] and (x["T"] is None or x["T"] <= row["TS"]):
            out.append(x)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 120))
def test_spatial_filter_equals_the_plain_filter(seed: int, n: int) -> None:
    rng = random.Random(seed)
    lat0, lon0 = rng.uniform(-60, 60), rng.uniform(-170, 170)
    pts = []
    for _ in range(n):
        pts.append({
            "LAT": lat0 + rng.uniform(-0.0008, 0.0008),
            "LON": lon0 + rng.uniform(-0.0008, 0.0008),
            "R": rng.choice([10.0, 25.0, 50.0, 100.0, 0.0, None, 33.3]),
            "T": rng.choice([None, 0, 50, 100]),
        })
    fn, spatial = _compile_filter()
    assert isinstance(spatial, SpatialFilter)
    for _ in range(20):
        row = {"LAT": lat0 + rng.uniform(-0.001, 0.001), "LON": lon0 + rng.uniform(-0.001, 0.001),
               "TS": rng.choice([0, 60, 200]), "PTS": pts}
        got = fn((row,))
        assert got == _naive(row, pts)
        # the distances it kept are GEO_DISTANCE's bits
        _r, kept, values = spatial.last
        assert kept is got
        for x, v in zip(kept, values, strict=True):
            assert v == geo_distance(row["LAT"], row["LON"], x["LAT"], x["LON"], "km") * 3280.8399


def test_out_of_range_position_takes_the_exact_path() -> None:
    fn, _ = _compile_filter()
    row = {"LAT": 91.0, "LON": 0.0, "TS": 0, "PTS": [{"LAT": 0.0, "LON": 0.0, "R": 10.0, "T": None}]}
    assert fn((row,)) == []


NEARBY = """
CREATE STREAM P (UID STRING KEY, LAT DOUBLE, LON DOUBLE, STORE STRING, TS BIGINT)
  WITH (KAFKA_TOPIC='p', VALUE_FORMAT='JSON');
CREATE TABLE T (STORE STRING PRIMARY KEY,
  PTS ARRAY<STRUCT<ID STRING, LAT DOUBLE, LON DOUBLE, R DOUBLE>>)
  WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON');
CREATE STREAM N AS SELECT p.UID AS UID, AS_VALUE(p.UID) AS `uid`,
  EXPLODE(TRANSFORM(FILTER(t.PTS, x => GEO_DISTANCE(p.LAT, p.LON, x->LAT, x->LON, 'km')
    * 3280.8399 <= x->R), x => x->ID)) AS `id`,
  EXPLODE(TRANSFORM(FILTER(t.PTS, x => GEO_DISTANCE(p.LAT, p.LON, x->LAT, x->LON, 'km')
    * 3280.8399 <= x->R), x => GEO_DISTANCE(p.LAT, p.LON, x->LAT, x->LON, 'km')
    * 3280.8399)) AS `d`,
  p.TS AS `ts`,
  EXPLODE(TRANSFORM(FILTER(t.PTS, x => GEO_DISTANCE(p.LAT, p.LON, x->LAT, x->LON, 'km')
    * 3280.8399 <= x->R), x => x->R + p.TS)) AS `mixed`
  FROM P p JOIN T t ON p.STORE = t.STORE PARTITION BY p.UID;
"""


def test_fused_explode_writes_what_orjson_writes_for_the_row() -> None:
    engine = MemoryEngine()
    engine.execute(NEARBY)
    rng = random.Random(3)
    pts = [{"ID": f"p{i}", "LAT": 51.5 + rng.uniform(-3e-4, 3e-4),
            "LON": -0.1 + rng.uniform(-3e-4, 3e-4), "R": rng.choice([10.0, 50.0, 100.0])}
           for i in range(60)]
    engine.insert("T", key="s1", value={"PTS": pts}, timestamp=0)
    expected = []
    for i in range(30):
        lat, lon = 51.5 + rng.uniform(-3e-4, 3e-4), -0.1 + rng.uniform(-3e-4, 3e-4)
        engine.insert("P", key=f"u{i}", value={"LAT": lat, "LON": lon, "STORE": "s1", "TS": i},
                      timestamp=i)
        for x in pts:
            d = geo_distance(lat, lon, x["LAT"], x["LON"], "km") * 3280.8399
            if d <= x["R"]:
                expected.append(orjson.dumps(
                    {"uid": f"u{i}", "id": x["ID"], "d": d, "ts": i, "mixed": x["R"] + i}))
    got = [rec["value"] for rec in engine.topics["N"]]
    assert got == expected
    assert expected  # the case has matches


def test_fused_explode_rows_without_an_encoder_are_the_same_rows() -> None:
    """A push query's core hands rows over as dicts (no encoder bound): same rows, same order."""
    from stream_apps.ksqldb.core import QueryCore
    from stream_apps.ksqldb.planner import plan_select

    engine = MemoryEngine()
    engine.execute(NEARBY)
    nq = next(q for q in engine.queries if q.sink.name == "N")
    rows: list[tuple] = []
    core = QueryCore(nq.core.plan, lambda k, ws, row, rt: rows.append((k, row, rt)))
    assert core.plan.explode is not None and core._encoded is None
    (stmt,) = sx.parse(
        "SELECT p.UID AS UID, EXPLODE(TRANSFORM(FILTER(t.PTS, x => GEO_DISTANCE(p.LAT, p.LON, "
        "x->LAT, x->LON, 'km') * 3280.8399 <= x->R), x => x->ID)) AS `id` FROM P p JOIN T t "
        "ON p.STORE = t.STORE EMIT CHANGES;"
    )
    assert plan_select(stmt.select, engine.lookup, persistent=False).explode is not None
    pts = [{"ID": f"p{i}", "LAT": 51.5 + i * 1e-5, "LON": -0.1, "R": 100.0} for i in range(20)]
    t_row = {"STORE": "s1", "PTS": pts, "ROWTIME": 0}
    engine.insert("T", key="s1", value={"PTS": pts}, timestamp=0)
    core.on_record(1, ("s1",), None, t_row, 0)
    for i in range(5):
        p_row = {"UID": f"u{i}", "LAT": 51.5 + i * 4e-5, "LON": -0.1, "STORE": "s1", "TS": i,
                 "ROWTIME": i}
        core.on_record(0, (f"u{i}",), None, p_row, i)
        engine.insert("P", key=f"u{i}", value={k: v for k, v in p_row.items()
                                               if k not in ("UID", "ROWTIME")}, timestamp=i)
    encoded = [orjson.loads(rec["value"]) for rec in engine.topics["N"]]
    as_dicts = [{k: v for k, v in row.items() if k != "UID"} for _k, row, _rt in rows]
    assert as_dicts == encoded
    assert [k for k, _row, _rt in rows] == [(row["uid"],) for row in encoded]
