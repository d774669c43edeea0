"""The SQL in docs/analytics.md runs on an archive and answers what it says: each ```sql block
is run with instore.archive.query over a small archive written by the archiver's writer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from instore import archive as a
from instore import records as r
from stream_apps.archive import rows as rw
from stream_apps.archive.writer import ArchiveWriter

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "analytics.md"
T0 = 1_767_258_000_000  # 2026-01-01T09:00:00Z (a Thursday)
KEYS = {"ann": b"a" * 32, "bob": b"b" * 32}


def blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


def write(w: ArchiveWriter, dataset: a.Dataset, records: list[r.Record | None],
          keys: list[bytes] | None = None, ts: int = T0) -> None:
    msgs = [rw.Message(dataset.topic.name, 0, i, ts, k, None if rec is None else rec.to_json())
            for i, (rec, k) in enumerate(zip(records, keys or [None] * len(records),
                                             strict=True))]
    first = w.next_offset(dataset.topic.name, 0) or 0
    msgs = [rw.Message(m.topic, 0, first + m.offset, m.timestamp_ms, m.key, m.value) for m in msgs]
    w.commit(dataset.topic.name, 0, msgs[0].offset, msgs[-1].offset,
             rw.rows(dataset, rw.decode(dataset, msgs), KEYS))


def near(uid: str, ts: int, pid: str = "p1", sku: int = 7) -> r.NearbyCustomer:
    return r.NearbyCustomer(uid=uid, store_id="s1", pid=pid, sku=sku, segment="coffee",
                            distance_ft=3, latitude=1, longitude=1, product_latitude=1,
                            product_longitude=1, ts=ts)


def offer(uid: str, oid: str, pid: str) -> r.Offer:
    return r.Offer(offer_id=oid, uid=uid, store_id="s1", pid=pid, sku=7, title=f"t-{pid}",
                   discount_pct=10, distance_ft=3, ts=T0, expires_at=T0 + 60_000)


@pytest.fixture
def archive(tmp_path: Path) -> str:
    w = ArchiveWriter(str(tmp_path))
    # ann: rows 2 s apart for 8 s (dwell 8 s), seen through two promotions at once (counted
    # once), then back 60 s later for 3 s (a new visit: the 60 s gap is not dwell)
    ann = [near("ann", T0 + i * 2000, pid) for i in range(5) for pid in ("p1", "p2")]
    ann += [near("ann", T0 + 68_000), near("ann", T0 + 71_000)]
    bob = [near("bob", T0 + 1000), near("bob", T0 + 5000, sku=8), near("bob", T0 + 7000, sku=8)]
    write(w, a.NEARBY, [*ann, *bob])
    write(w, a.OFFERS, [offer("ann", "o1", "p1"), offer("bob", "o2", "p1"),
                        offer("ann", "o3", "p2")])
    events = [r.OfferEvent(offer_id=o, uid=u, event=e, ts=T0 + 5)
              for o, u, e in (("o1", "ann", "delivered"), ("o1", "ann", "redeemed"),
                              ("o1", "ann", "redeemed"), ("o2", "bob", "opened"))]
    write(w, a.OFFER_EVENTS, events)
    product = r.StoreProduct(sku=7, store_id="s1", segment="coffee", name="espresso",
                             latitude=1, longitude=1)
    write(w, a.PRODUCTS, [product, product.model_copy(update={"name": "espresso 2"}),
                          r.StoreProduct(sku=8, store_id="s1", segment="tea", name="tea",
                                         latitude=1, longitude=1), None],
          keys=[b"s1:7", b"s1:7", b"s1:8", b"s1:8"])
    write(w, a.DEAD_LETTERS, [r.dead_letter("customers_locations", "invalid JSON: x", b"{")] * 2)
    return str(tmp_path)


def test_every_sql_block_runs(archive: str) -> None:
    assert len(blocks()) >= 4
    for sql in blocks():
        a.query(archive, sql)  # raises ArchiveQueryError with DuckDB's message


def test_dwell_per_product_per_day(archive: str) -> None:
    dwell = a.query(archive, blocks()[0])
    got = {(row[2], row[3]) for row in dwell.rows}
    # ann at sku 7: 4 gaps of 2 s + 3 s on the second visit; bob at sku 8: 2 s (the 4 s gap
    # from his sku 7 row is another product)
    assert got == {(7, 11.0), (8, 2.0)}


def test_conversion_per_promotion_per_week(archive: str) -> None:
    rows = {row[1]: row for row in a.query(archive, blocks()[1]).rows}
    assert rows["p1"][3:] == [2, 1, 50.0]  # two offers, one redeemed (twice: counted once)
    assert rows["p2"][3:] == [1, 0, 0.0]


def test_catalog_at_the_end_of_a_day(archive: str) -> None:
    rows = a.query(archive, blocks()[2]).rows
    assert [(row[1], row[2]) for row in rows] == [(7, "espresso 2")]  # sku 8 was deleted


def test_dead_letters_per_reason(archive: str) -> None:
    assert a.query(archive, blocks()[3]).rows == [["customers_locations", "invalid JSON", 2]]
