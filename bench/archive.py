"""The archiver's benchmark: positions and NEARBY rows of the benchmark world on a private
embedded stack (Kafka and Redis), archived once (`Archiver.run(once=True)`), then queried with
DuckDB. Prints records/s archived, files, bytes per record on disk, and the time of two analyst
queries; appends the figures to bench/results/archive.jsonl."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instore import archive as a
from instore import results
from instore import topics as t
from instore.embedded.services import isolated_settings, start_stack
from instore.kafka import make_producer
from instore.records import NearbyCustomer, now_ms
from instore.results import time_left
from instore.settings import Settings, get_settings
from producers.shoppers import walk_positions
from producers.world import build_world
from stream_apps.archive.service import Archiver

DWELL_SQL = """
WITH moments AS (SELECT DISTINCT store_id, sku, shopper, ts FROM nearby),
gaps AS (SELECT store_id, sku,
                ts - lag(ts) OVER (PARTITION BY store_id, sku, shopper ORDER BY ts) AS gap
         FROM moments)
SELECT store_id, sku, sum(gap) / 1000.0 AS dwell_s FROM gaps WHERE gap <= 5000
GROUP BY ALL ORDER BY dwell_s DESC LIMIT 10
"""


def _produce(settings: Settings, positions: int, seed: int,
             progress: Callable[[str], None]) -> tuple[int, int]:
    """Positions of shoppers walking the benchmark world, and a NEARBY row for every 4th."""
    started = time.perf_counter()
    world = build_world(stores=2, products=2000, promoted=50, seed=seed)
    producer = make_producer(settings, **{"linger.ms": 20})
    n = near = 0
    start = now_ms() - 3_600_000  # within the retention: the broker keeps what it is given
    for pos in walk_positions(world, shoppers=200, hz=2.0, seed=seed, start_ms=start):
        if n >= positions:
            break
        value = pos.to_json()
        assert pos.ts is not None  # walk_positions times every position
        producer.produce(t.CUSTOMERS_LOCATIONS.name, key=pos.uid.encode(), value=value,
                         timestamp=pos.ts)
        if n % 4 == 0:
            row = NearbyCustomer(uid=pos.uid, store_id=pos.store_id or "s", pid="p", sku=n % 97,
                                 segment="s", distance_ft=3.0, latitude=pos.latitude,
                                 longitude=pos.longitude, product_latitude=pos.latitude,
                                 product_longitude=pos.longitude, ts=pos.ts)
            producer.produce(t.NEARBY_CUSTOMERS.name, key=pos.uid.encode(), value=row.to_json(),
                             timestamp=pos.ts)
            near += 1
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
        if n % 50_000 == 0:
            progress(f"{n:,} of {positions:,} positions, {time_left(n, positions, started)}")
    producer.flush(60)
    return n, near


def run(positions: int = 200_000, seed: int = 7,
        progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    settings = isolated_settings(get_settings(), kafka_partitions=4)
    with tempfile.TemporaryDirectory(prefix="instore-bench-archive-") as tmp:
        root = Path(tmp) / "archive"
        settings = settings.model_copy(update={"archive_url": str(root)})
        progress("starting Kafka and Redis")
        stack = start_stack(settings, Path(tmp), only={"broker", "redis"})
        try:
            progress(f"producing {positions:,} positions and their NEARBY rows")
            n, near = _produce(settings, positions, seed, progress)
            progress("archiving")
            archiver = Archiver(settings)
            started = time.perf_counter()
            archiver.run(once=True)
            elapsed = time.perf_counter() - started
        finally:
            stack.stop()
        files = list(root.rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        progress("querying")
        started = time.perf_counter()
        count = a.query(str(root), "SELECT count(*) FROM positions").rows[0][0]
        count_s = time.perf_counter() - started
        started = time.perf_counter()
        a.query(str(root), DWELL_SQL)
        dwell_s = time.perf_counter() - started
    records = n + near
    return {
        "positions": n, "nearby_rows": near, "archived": archiver.stats["records"],
        "positions_in_archive": count, "archive_s": round(elapsed, 2),
        "records_per_s": round(records / elapsed), "files": len(files),
        "bytes_per_record": round(size / max(records, 1), 1),
        "count_query_ms": round(count_s * 1000, 1), "dwell_query_ms": round(dwell_s * 1000, 1),
        "flush_records": settings.archive_flush_records, "partitions": settings.kafka_partitions,
    }


def run_and_record(**kwargs: Any) -> dict[str, Any]:
    fig = run(**kwargs)
    return results.append("archive", fig)
