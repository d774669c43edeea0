"""One writer of NEARBY_CUSTOMERS (NEARBY_ENGINE): the ksqlDB migrations declare the stream and
no query of theirs writes it; the writer (ksql/nearby_writer/) is a separate statement whose
columns are the declared stream's, in order and type (ksqlDB's INSERT INTO requires it); the
worker drops its proximity agent when ksqlDB writes the topic."""

from __future__ import annotations

import orjson
import pytest

from instore import health
from instore import topics as t
from instore.commands.ksql.migrations import MIGRATIONS_DIR, NEARBY_WRITER_FILE, migration_files
from instore.records import NearbyCustomer
from instore.settings import Settings
from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.planner import plan_select
from stream_apps.ksqldb.testing import MemoryEngine

T0 = 1_767_225_600_000


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def migrated() -> MemoryEngine:
    engine = MemoryEngine()
    for _version, _name, path in migration_files(MIGRATIONS_DIR):
        engine.execute(path.read_text())
    return engine


def writers(engine: MemoryEngine) -> list[str]:
    return [q.id for q in engine.queries if q.sink.name == t.NEARBY_CUSTOMERS.name]


def test_the_writer_is_not_a_migration() -> None:
    assert NEARBY_WRITER_FILE.is_file()
    assert NEARBY_WRITER_FILE.parent != MIGRATIONS_DIR
    assert all(p.name.startswith("V") for p in MIGRATIONS_DIR.iterdir()), "versioned files only"


def test_migrations_declare_nearby_customers_with_the_contract_fields_and_do_not_write_it() -> None:
    engine = migrated()
    stream = engine.sources[t.NEARBY_CUSTOMERS.name]
    assert stream.kind == "STREAM" and stream.topic == t.NEARBY_CUSTOMERS.name
    assert stream.owner_query is None
    assert writers(engine) == []
    assert [n for n, _ in stream.key_columns] == ["UID"]
    assert [n for n, _ in stream.value_columns] == list(NearbyCustomer.model_fields)
    # the analyst views read it
    readers = {q.sink.name for q in engine.queries
               if t.NEARBY_CUSTOMERS.name in q.sources}
    assert {"NEARBY_PER_PROMOTION_HOURLY", "PRODUCT_DWELL"} <= readers


def test_the_writer_produces_the_declared_stream_column_for_column() -> None:
    """ksqlDB accepts INSERT INTO only when the query's columns are the sink's, in order, with
    types it can cast implicitly (LogicalSchema.compatibleSchema): here they are identical."""
    engine = migrated()
    (stmt,) = sx.parse(NEARBY_WRITER_FILE.read_text())
    assert isinstance(stmt, sx.InsertInto) and stmt.target == t.NEARBY_CUSTOMERS.name
    plan = plan_select(stmt.select, engine.lookup, persistent=True, sink=stmt.target)
    stream = engine.sources[t.NEARBY_CUSTOMERS.name]
    assert plan.key_columns == stream.key_columns
    assert plan.value_columns == stream.value_columns


def test_with_the_writer_positions_become_rows_the_analyst_views_count_once() -> None:
    engine = migrated()
    engine.execute(NEARBY_WRITER_FILE.read_text())
    assert len(writers(engine)) == 1
    engine.insert("PRODUCTS", key="s1:101", timestamp=T0, value={
        "sku": 101, "store_id": "s1", "segment": "coffee", "name": "Beans",
        "latitude": 51.5, "longitude": -0.25, "country": "GB"})
    for pid, promo in (("p-sku", {"sku": 101}), ("p-seg", {"segment": "coffee"})):
        engine.insert("PROMOTIONS", key=pid, timestamp=T0,
                      value={"title": pid, "discount_pct": 10.0, "radius_ft": 30.0, **promo})
    for i, ts in enumerate((T0 + 1_000, T0 + 2_000, T0 + 3_500)):
        engine.insert("POSITIONS", key="u1", timestamp=ts, value={
            "store_id": "s1", "latitude": 51.5 + i * 1e-6, "longitude": -0.25, "ts": ts,
            "country": "GB"})
    engine.insert("POSITIONS", key="u2", timestamp=T0 + 4_000, value={  # ~1100 ft away
        "store_id": "s1", "latitude": 51.503, "longitude": -0.25, "ts": T0 + 4_000})
    rows = [orjson.loads(r["value"]) for r in engine.topics[t.NEARBY_CUSTOMERS.name]]
    assert sorted((r["uid"], r["pid"], r["ts"] - T0) for r in rows) == [
        ("u1", "p-seg", 1_000), ("u1", "p-seg", 2_000), ("u1", "p-seg", 3_500),
        ("u1", "p-sku", 1_000), ("u1", "p-sku", 2_000), ("u1", "p-sku", 3_500)]
    for r in rows:
        NearbyCustomer.model_validate(r)  # the contract's record
    per_promo = {pid: n for pid, n in engine.pull(
        "SELECT PID, NEARBY FROM NEARBY_PER_PROMOTION_HOURLY;")}
    assert per_promo == {"p-sku": 3, "p-seg": 3}
    assert engine.pull("SELECT PRODUCT_ID, UID, DWELL_S FROM PRODUCT_DWELL;") == \
        [["s1:101", "u1", 2.5]]


@pytest.mark.parametrize(("agents", "engine", "running", "topics"), [
    ("proximity,policy,analytics", "faust", {"proximity", "policy", "analytics"},
     [t.CUSTOMERS_LOCATIONS.name]),
    ("proximity,policy,analytics", "ksqldb", {"policy", "analytics"},
     [t.NEARBY_CUSTOMERS.name]),
    ("proximity", "ksqldb", set(), []),
    ("policy,analytics", "faust", {"policy", "analytics"}, [t.NEARBY_CUSTOMERS.name]),
    ("policy", "ksqldb", {"policy"}, [t.NEARBY_CUSTOMERS.name]),
])
def test_worker_agents_and_topics_follow_the_nearby_engine(
        agents: str, engine: str, running: set[str], topics: list[str]) -> None:
    settings = _settings(worker_agents=agents, nearby_engine=engine)
    assert health.worker_agents(settings) == running
    assert health.worker_topics(settings) == topics
