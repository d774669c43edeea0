"""The archive (cold storage): its layout, its columns, the pseudonyms it holds instead of
uids, and the DuckDB connection analysts query it through. The archiver
(``stream_apps/archive``) writes it; ``instore analytics sql``, the API's ``POST
/analytics/sql`` and the daily reports read it. Nothing else spells a path of it.

Layout under ARCHIVE_URL (a folder, or any fsspec URL such as ``s3://bucket/prefix``)::

    <dataset>/date=YYYY-MM-DD/store=<store_id>/<topic>+<partition>+<first>+<last>.parquet
    <dataset>/date=YYYY-MM-DD/<topic>+<partition>+<first>+<last>.parquet       (no store)
    _manifests/<topic>/<partition>/<first>+<last>.json

``first`` and ``last`` are the Kafka offsets of the range a file set holds. A range is
committed by its manifest (written after its files, under temporary names, and before they
are renamed into place), so the archive holds every offset once: see
``stream_apps/archive/writer.py``.

Identity: no uid is archived. A shopper's rows carry ``shopper``, an HMAC of a random key kept
for that shopper in the serving store (``serving.archive_key``), and offers ``offer_ref``, an
HMAC of the offer id with the same key (an offer id is a hash of the uid, so it could be
recomputed from a uid). Erasure deletes the key: from then on no uid can be linked to its
archived rows, and rows of the shopper archived after the erasure carry no identity at all.
Dead letters are archived without their raw bytes (they may hold a uid).
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from instore import topics as t
from instore.errors import InstoreError

MANIFESTS = "_manifests"
REPORTS = "reports"
TMP_SUFFIX = ".tmp"
IDENTITY_LEN = 24  # hex characters of a pseudonym (96 bits)

_META: tuple[tuple[str, pa.DataType], ...] = (
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("kafka_ts", pa.int64()),
)


@dataclass(frozen=True)
class Dataset:
    """One archived topic: its folder and DuckDB view (``name``), its columns, and how its
    rows are placed (``store_field``: partition by store; ``time_field``: the event time that
    decides the date, else the Kafka record time)."""

    name: str
    topic: t.Topic
    columns: tuple[tuple[str, pa.DataType], ...]
    store_field: str | None = "store_id"
    time_field: str | None = "ts"
    table: bool = False  # a compacted table's changes: rows carry ``key`` and ``deleted``
    description: str = ""
    schema: pa.Schema = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        cols = list(self.columns)
        if self.table:
            cols += [("key", pa.string()), ("deleted", pa.bool_())]
        object.__setattr__(self, "schema", pa.schema(cols + list(_META)))

    @property
    def column_names(self) -> list[str]:
        return self.schema.names


POSITIONS = Dataset("positions", t.CUSTOMERS_LOCATIONS, (
    ("shopper", pa.string()), ("store_id", pa.string()), ("latitude", pa.float64()),
    ("longitude", pa.float64()), ("country", pa.string()), ("ts", pa.int64()),
    ("source", pa.string()), ("accuracy_m", pa.float64()),
), description="where shoppers stood (customers_locations)")
KIOSK = Dataset("kiosk_interactions", t.KIOSK_INTERACTIONS, (
    ("store_id", pa.string()), ("kiosk_id", pa.string()), ("shopper", pa.string()),
    ("action", pa.string()), ("sku", pa.int64()), ("ts", pa.int64()),
), description="check-ins, views, taps and scans at kiosks")
NEARBY = Dataset("nearby", t.NEARBY_CUSTOMERS, (
    ("shopper", pa.string()), ("store_id", pa.string()), ("pid", pa.string()),
    ("sku", pa.int64()), ("segment", pa.string()), ("distance_ft", pa.float64()),
    ("latitude", pa.float64()), ("longitude", pa.float64()),
    ("product_latitude", pa.float64()), ("product_longitude", pa.float64()),
    ("country", pa.string()), ("ts", pa.int64()),
), description="a shopper near a promoted product (NEARBY_CUSTOMERS)")
OFFERS = Dataset("offers", t.OFFERS, (
    ("offer_ref", pa.string()), ("shopper", pa.string()), ("store_id", pa.string()),
    ("pid", pa.string()), ("sku", pa.int64()), ("title", pa.string()),
    ("discount_pct", pa.float64()), ("distance_ft", pa.float64()), ("ts", pa.int64()),
    ("expires_at", pa.int64()),
), description="offers the policy made")
OFFER_EVENTS = Dataset("offer_events", t.OFFER_EVENTS, (
    ("offer_ref", pa.string()), ("shopper", pa.string()), ("event", pa.string()),
    ("ts", pa.int64()),
), store_field=None, description="delivered / opened / redeemed (join offers on offer_ref)")
DEAD_LETTERS = Dataset("dead_letters", t.DEAD_LETTERS, (
    ("source_topic", pa.string()), ("source_partition", pa.int32()),
    ("source_offset", pa.int64()), ("reason", pa.string()), ("error", pa.string()),
), store_field=None, time_field=None, description="what failed validation, and why (no raw bytes)")
PRODUCTS = Dataset("products", t.STORES_PRODUCTS, (
    ("store_id", pa.string()), ("sku", pa.int64()), ("segment", pa.string()),
    ("variant", pa.string()), ("name", pa.string()), ("latitude", pa.float64()),
    ("longitude", pa.float64()), ("country", pa.string()),
), time_field=None, table=True, description="catalog changes (stores_products)")
PROMOTIONS = Dataset("promotions", t.PRODUCTS_PROMOTIONS, (
    ("pid", pa.string()), ("sku", pa.int64()), ("segment", pa.string()), ("title", pa.string()),
    ("discount_pct", pa.float64()), ("radius_ft", pa.float64()), ("starts_at", pa.int64()),
    ("ends_at", pa.int64()),
), store_field=None, time_field=None, table=True,
    description="promotion changes (products_promotions; deleted = withdrawn)")

DATASETS: tuple[Dataset, ...] = (
    POSITIONS, KIOSK, NEARBY, OFFERS, OFFER_EVENTS, DEAD_LETTERS, PRODUCTS, PROMOTIONS)
BY_TOPIC: dict[str, Dataset] = {d.topic.name: d for d in DATASETS}
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}
# shopper_consents is never archived: it is the one topic that is only about a person.


# Paths ------------------------------------------------------------------------------------

def day_of(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date()


def partition_dir(dataset: Dataset, day: date, store_id: str | None) -> str:
    """``<dataset>/date=D[/store=S]`` (the store URL-quoted: a store id may hold ``/``)."""
    parts = [dataset.name, f"date={day.isoformat()}"]
    if dataset.store_field is not None:
        parts.append(f"store={quote(store_id or '_none', safe='')}")
    return posixpath.join(*parts)


def range_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:012d}+{last:012d}"


def manifest_dir(topic: str, partition: int) -> str:
    return posixpath.join(MANIFESTS, topic, str(partition))


def manifest_path(topic: str, partition: int, first: int, last: int) -> str:
    return posixpath.join(manifest_dir(topic, partition), f"{first:012d}+{last:012d}.json")


def parse_manifest_name(name: str) -> tuple[int, int] | None:
    """(first, last) of a manifest file name, or None for anything else."""
    stem = posixpath.basename(name).removesuffix(".json")
    parts = stem.split("+")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not name.endswith(".json"):
        return None
    return int(parts[0]), int(parts[1])


# Identity ---------------------------------------------------------------------------------

def shopper_id(key: bytes) -> str:
    """The archived stand-in for a uid: an HMAC with the shopper's archive key."""
    return hmac.new(key, b"shopper", hashlib.sha256).hexdigest()[:IDENTITY_LEN]


def offer_ref(key: bytes, offer_id: str) -> str:
    """The archived stand-in for an offer id (an offer id is derived from the uid)."""
    return hmac.new(key, f"offer:{offer_id}".encode(), hashlib.sha256).hexdigest()[:IDENTITY_LEN]


def identity_of(rds: Any, uid: str) -> tuple[str | None, bytes | None]:
    """(shopper pseudonym, key) of a shopper whose archive key exists, else (None, None).
    Lets an operator answer a shopper's access request; after erasure it finds nothing."""
    from instore import serving  # noqa: PLC0415

    raw = rds.get(serving.archive_key(uid))
    if raw is None:
        return None, None
    key = bytes.fromhex(raw.decode() if isinstance(raw, bytes) else raw)
    return shopper_id(key), key


# Reading: DuckDB ----------------------------------------------------------------------------

class ArchiveQueryError(InstoreError, ValueError):
    """A query the archive refuses or DuckDB rejects; the message is DuckDB's, one line."""


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool

    def as_dicts(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            yield dict(zip(self.columns, row, strict=True))


def filesystem(location: str) -> tuple[Any, str]:
    """(fsspec filesystem, root path inside it) of an archive location."""
    import fsspec  # noqa: PLC0415

    fs, root = fsspec.core.url_to_fs(location)
    return fs, root.rstrip("/")


def _url(fs: Any, root: str, *parts: str) -> str:
    path = posixpath.join(root, *parts)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def connect(location: str) -> Any:
    """An in-memory DuckDB connection with one view per dataset over the archive's Parquet
    files (hive partitions ``date`` and, where stored by store, ``store``), locked so that a
    statement reads the archive and nothing else on this machine (no other file, no
    extension, no configuration change). A dataset with no file yet is an empty view."""
    import duckdb  # noqa: PLC0415

    fs, root = filesystem(location)
    con = duckdb.connect(":memory:")
    local = _url(fs, root) == root
    if not local:
        con.register_filesystem(fs)
    for ds in DATASETS:
        glob = _url(fs, root, ds.name, "**", "*.parquet")
        has_files = bool(fs.glob(posixpath.join(root, ds.name, "**", "*.parquet")))
        hive = {"date": "DATE"} | ({"store": "VARCHAR"} if ds.store_field else {})
        if has_files:
            con.execute(
                f"CREATE VIEW {ds.name} AS SELECT * FROM read_parquet({_lit(glob)}, "  # noqa: S608 - constants and a quoted path
                f"hive_partitioning=true, hive_types={_duck_struct(hive)}, union_by_name=true)")
        else:
            empty = pa.table({n: pa.array([], type=ty) for n, ty in
                              zip(ds.schema.names, ds.schema.types, strict=True)})
            for name, typ in hive.items():
                empty = empty.append_column(name, pa.array([], type=pa.date32() if typ == "DATE"
                                                           else pa.string()))
            con.register(f"_{ds.name}_empty", empty)
            con.execute(f"CREATE VIEW {ds.name} AS SELECT * FROM _{ds.name}_empty")  # noqa: S608
    allowed = _url(fs, root) + "/"
    con.execute(f"SET allowed_directories = [{_lit(allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _duck_struct(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in mapping.items()) + "}"


def query(location: str, sql: str, *, max_rows: int = 10_000, timeout_s: float = 60.0) -> QueryResult:
    """Run one read-only SELECT (or WITH ... SELECT, or DuckDB's ``FROM x``) over the archive.

    Anything else (DDL, COPY, ATTACH, SET, several statements) is refused with
    ``ArchiveQueryError``, as is a query running longer than ``timeout_s`` (interrupted).
    At most ``max_rows`` rows come back; ``truncated`` says when there were more.
    """
    import duckdb  # noqa: PLC0415

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ArchiveQueryError(_one_line(exc)) from None
    if len(statements) != 1:
        msg = f"one SELECT statement per query, got {len(statements)}"
        raise ArchiveQueryError(msg)
    if statements[0].type != duckdb.StatementType.SELECT:
        msg = f"the archive is read-only: only SELECT is allowed, not {statements[0].type.name}"
        raise ArchiveQueryError(msg)
    con = connect(location)
    timer = threading.Timer(timeout_s, con.interrupt)
    timer.start()
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description]
        types = [str(d[1]) for d in cur.description]
        rows = cur.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        msg = f"the query ran longer than {timeout_s:.0f} s and was stopped"
        raise ArchiveQueryError(msg) from None
    except duckdb.Error as exc:
        raise ArchiveQueryError(_one_line(exc)) from None
    finally:
        timer.cancel()
        con.close()
    truncated = len(rows) > max_rows
    return QueryResult(columns, types, [[_jsonable(v) for v in row] for row in rows[:max_rows]],
                       truncated)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value != value:  # NaN
        return None
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return value
