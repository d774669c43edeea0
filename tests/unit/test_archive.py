"""The archive on plain lists and a temporary folder: rows, pseudonyms, exactly-once file sets
and their recovery, and the read-only DuckDB views."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from instore import archive as a
from instore import quality
from instore import records as r
from instore.settings import Settings
from stream_apps.archive import rows as rw
from stream_apps.archive.writer import ArchiveWriter

DAY_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def pos(uid: str, offset: int, ts: int, store: str = "s1", partition: int = 0) -> rw.Message:
    value = r.CustomerLocation(uid=uid, store_id=store, latitude=1.0, longitude=2.0, ts=ts,
                               source="sim").to_json()
    return rw.Message("customers_locations", partition, offset, ts + 50, uid.encode(), value)


def offer(uid: str, offset: int, ts: int, offer_id: str = "o-1") -> rw.Message:
    value = r.Offer(offer_id=offer_id, uid=uid, store_id="s1", pid="p1", sku=7, title="t",
                    discount_pct=10, distance_ft=3.0, ts=ts, expires_at=ts + 1000).to_json()
    return rw.Message("offers", 0, offset, ts, uid.encode(), value)


def test_rows_pseudonymize_and_group_by_day_and_store() -> None:
    msgs = [pos("alice", 0, DAY_MS + 1), pos("bob", 1, DAY_MS - 1, store="s2"),
            rw.Message("customers_locations", 0, 2, DAY_MS, b"x", b"{not json")]
    decoding = rw.decode(a.POSITIONS, msgs)
    assert decoding.invalid == 1 and decoding.uids() == {"alice", "bob"}
    groups = rw.rows(a.POSITIONS, decoding, {"alice": b"k1" * 16, "bob": None})
    days = {(day.isoformat(), store) for _, day, store in groups}
    assert days == {("2026-01-01", "s1"), ("2025-12-31", "s2")}
    alice = next(iter(groups[("positions", a.day_of(DAY_MS + 1), "s1")]))
    assert alice["shopper"] == a.shopper_id(b"k1" * 16) and "uid" not in alice
    assert alice["kafka_offset"] == 0 and alice["ts"] == DAY_MS + 1
    bob = groups[("positions", a.day_of(DAY_MS - 1), "s2")][0]
    assert bob["shopper"] is None  # erased before archiving: no identity at all


def test_offer_ids_are_keyed_like_the_shopper() -> None:
    key = b"\x01" * 32
    groups = rw.rows(a.OFFERS, rw.decode(a.OFFERS, [offer("alice", 0, DAY_MS)]), {"alice": key})
    row = next(iter(groups.values()))[0]
    assert row["offer_ref"] == a.offer_ref(key, "o-1") != "o-1"
    assert "o-1" not in json.dumps(row) and "alice" not in json.dumps(row)


def test_dead_letters_lose_their_raw_bytes() -> None:
    dl = r.dead_letter("customers_locations", "invalid JSON: oops", b'{"uid": "alice"', 0, 5)
    msg = rw.Message("dead_letters", 0, 0, DAY_MS, None, dl.to_json())
    groups = rw.rows(a.DEAD_LETTERS, rw.decode(a.DEAD_LETTERS, [msg]), {})
    row = next(iter(groups.values()))[0]
    assert row["reason"] == "invalid JSON" and row["source_offset"] == 5
    assert "alice" not in json.dumps(row)


def test_table_tombstones_are_rows_marked_deleted() -> None:
    msg = rw.Message("stores_products", 0, 3, DAY_MS, b"s9:42", None)
    groups = rw.rows(a.PRODUCTS, rw.decode(a.PRODUCTS, [msg]), {})
    (group, rows), = groups.items()
    assert group[2] == "s9" and rows[0]["deleted"] is True and rows[0]["key"] == "s9:42"


def read_all(root: Path, dataset: str) -> list[dict]:
    out = []
    for f in sorted((root / dataset).rglob("*.parquet")):
        out += pq.read_table(f).to_pylist()
    return out


def test_commit_then_recover_rolls_forward_and_drops_uncommitted(tmp_path: Path) -> None:
    w = ArchiveWriter(str(tmp_path))
    msgs = [pos("alice", i, DAY_MS + i) for i in range(5)]
    groups = rw.rows(a.POSITIONS, rw.decode(a.POSITIONS, msgs), {"alice": b"k" * 32})
    done = w.commit("customers_locations", 0, 0, 4, groups)
    assert done.records == 5 and w.next_offset("customers_locations", 0) == 5
    assert [row["kafka_offset"] for row in read_all(tmp_path, "positions")] == [0, 1, 2, 3, 4]
    # A crash after the manifest, before the rename: recovery rolls the file forward.
    final = tmp_path / done.files[0]
    final.rename(str(final) + a.TMP_SUFFIX)
    # A crash before the manifest: an uncommitted file of the next range is deleted.
    later = rw.rows(a.POSITIONS, rw.decode(a.POSITIONS, [pos("alice", 5, DAY_MS + 5)]),
                    {"alice": b"k" * 32})
    (_, day, store), = later
    orphan = tmp_path / a.partition_dir(a.POSITIONS, day, store) / (
        a.range_name("customers_locations", 0, 5, 5) + ".parquet" + a.TMP_SUFFIX)
    orphan.write_bytes(b"partial")
    assert w.recover() == (1, 1)
    assert final.exists() and not orphan.exists()
    assert len(read_all(tmp_path, "positions")) == 5
    assert w.next_offset("customers_locations", 0) == 5
    assert w.next_offset("customers_locations", 1) is None


def test_an_empty_range_is_still_recorded(tmp_path: Path) -> None:
    w = ArchiveWriter(str(tmp_path))
    w.commit("offers", 2, 10, 19, {})
    assert w.next_offset("offers", 2) == 20


def test_duckdb_views_and_read_only(tmp_path: Path) -> None:
    w = ArchiveWriter(str(tmp_path))
    msgs = [pos("alice", i, DAY_MS + i * 1000) for i in range(3)]
    w.commit("customers_locations", 0, 0, 2,
             rw.rows(a.POSITIONS, rw.decode(a.POSITIONS, msgs), {"alice": b"k" * 32}))
    res = a.query(str(tmp_path), "SELECT store_id, store, date, count(*) AS n FROM positions "
                  "GROUP BY ALL")
    assert res.columns == ["store_id", "store", "date", "n"]
    assert res.rows == [["s1", "s1", "2026-01-01", 3]]
    empty = a.query(str(tmp_path), "SELECT count(*) FROM offers")  # no file yet: empty view
    assert empty.rows == [[0]]
    for bad in ("COPY (SELECT 1) TO 'x.csv'", "CREATE TABLE x AS SELECT 1",
                "SELECT 1; SELECT 2", "SELECT * FROM read_csv('/etc/passwd')",
                "SET enable_external_access = true", "SELECT * FROM nope"):
        with pytest.raises(a.ArchiveQueryError):
            a.query(str(tmp_path), bad)
    capped = a.query(str(tmp_path), "SELECT * FROM range(10)", max_rows=4)
    assert len(capped.rows) == 4 and capped.truncated


def test_quality_counts_and_thresholds() -> None:
    q = rw.Quality(late_ms=10_000)
    msgs = [pos("alice", 0, DAY_MS), pos("alice", 1, DAY_MS - 20_000),  # out of order
            rw.Message("customers_locations", 0, 2, DAY_MS + 60_000, b"bob",
                       r.CustomerLocation(uid="bob", latitude=1, longitude=1,
                                          ts=DAY_MS).to_json())]  # late by a minute
    q.observe(a.POSITIONS, msgs, rw.decode(a.POSITIONS, msgs))
    dl = [rw.Message("dead_letters", 0, i, DAY_MS, None,
                     r.dead_letter("customers_locations", "invalid JSON: x", b"{").to_json())
          for i in range(2)]
    q.observe(a.DEAD_LETTERS, dl, rw.decode(a.DEAD_LETTERS, dl))
    totals: Counter[str] = Counter()
    for (_bucket, name), n in q.take().items():
        totals[name] += n
    assert totals == {"records:customers_locations": 3, "dead:customers_locations:invalid JSON": 2,
                      "late": 1, "out_of_order": 1}
    settings = Settings(dq_thresholds={"customers_locations": 0.5})
    rep = quality.report(settings, totals)
    entry = rep["topics"]["customers_locations"]
    assert entry["dead_letter_share"] == pytest.approx(2 / 3) and entry["degraded"]
    assert not rep["ok"] and "customers_locations" in rep["reason"]
    assert quality.report(Settings(dq_thresholds={"customers_locations": 0.9}), totals)["ok"]


def test_any_fsspec_url(tmp_path: Path) -> None:
    """The archive on a non-local fsspec filesystem (memory://, as s3:// would be)."""
    location = f"memory://archive-{tmp_path.name}"
    w = ArchiveWriter(location)
    msgs = [pos("alice", i, DAY_MS + i * 1000) for i in range(3)]
    w.commit("customers_locations", 0, 0, 2,
             rw.rows(a.POSITIONS, rw.decode(a.POSITIONS, msgs), {"alice": b"k" * 32}))
    assert w.next_offset("customers_locations", 0) == 3 and w.recover() == (0, 0)
    assert a.query(location, "SELECT store, count(*) FROM positions GROUP BY ALL").rows == [
        ["s1", 3]]
    with pytest.raises(a.ArchiveQueryError):
        a.query(location, "SELECT * FROM read_csv('/etc/passwd')")
