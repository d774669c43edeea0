"""Peers of the worker's proximity step, for `instore bench proximity --peers`.

The same step as the worker's proximity agent (stream_apps/app.py), written with quix-streams
(``bench.peers.quix_proximity``) and with bytewax (``bench.peers.bytewax_proximity``), each run
as its own process by ``bench.peers.measure``. This module holds what both share: the catalog
loader (the compacted topics read to their end offsets at start, as stream_apps/views.py does
for the worker), the step on one position, the clients' settings and the command line.

The quix peer runs under its own interpreter (quix-streams pins an older confluent-kafka and
pydantic than the project's), so this module imports nothing but instore and confluent-kafka.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from instore import topics as t
from instore.errors import InstoreError
from instore.geo import GeoError
from instore.kafka import client_config, consumer_config, producer_config
from instore.proximity import Hit, ProximityState, UnknownStore
from instore.records import CustomerLocation, RecordError, decode
from instore.settings import Settings

log = logging.getLogger("bench.peers")
CATALOG = (t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS)


class CatalogError(InstoreError, RuntimeError):
    pass


# What client_config holds besides the connection (address, security): the log hook (each
# framework serves its clients' callbacks its own way) and the client tuning, which goes with
# each client's extra settings (quix-streams' ConnectionConfig takes connection keys only).
_NOT_CONNECTION = ("logger", "reconnect.backoff.max.ms")


def connection(settings: Settings) -> dict[str, Any]:
    """librdkafka's connection settings (address, security)."""
    return {k: v for k, v in client_config(settings).items() if k not in _NOT_CONNECTION}


def _tuning(settings: Settings) -> dict[str, Any]:
    cfg = client_config(settings)
    return {k: cfg[k] for k in _NOT_CONNECTION if k != "logger" and k in cfg}


def output_config(settings: Settings) -> dict[str, Any]:
    """The worker's output producer settings (stream_apps/output.py: idempotent, acks=all,
    murmur2 partitioning, its linger and compression), connection settings left out."""
    cfg = producer_config(settings, **{"linger.ms": settings.worker_output_linger_ms})
    return {k: v for k, v in cfg.items() if k not in client_config(settings)} | _tuning(settings)


def input_config(settings: Settings) -> dict[str, Any]:
    """The consumer settings every client of the project uses (fetch wait), connection left out."""
    return {"fetch.wait.max.ms": settings.consumer_fetch_wait_ms} | _tuning(settings)


def load_catalog(settings: Settings, timeout_s: float = 120.0) -> ProximityState:
    """Every StoreProduct and Promotion (upserts and tombstones) read to the end offsets seen
    at start, into a ProximityState; invalid records are skipped and counted."""
    state = ProximityState(settings.geofence_margin_m)
    consumer = Consumer(consumer_config(settings))
    t0 = time.monotonic()
    try:
        end: dict[tuple[str, int], int] = {}
        for topic in CATALOG:
            meta = consumer.list_topics(topic.name, timeout=10).topics.get(topic.name)
            if meta is None or meta.error is not None or not meta.partitions:
                msg = f"topic {topic.name} does not exist: run `instore up` (it creates the topics)"
                raise CatalogError(msg)
            for p in meta.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)
                if high > 0:
                    end[(topic.name, p)] = high
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for name, p in end])
        counts = _read_to_end(consumer, state, end, t0 + timeout_s)
    finally:
        consumer.close()
    log.info("catalog loaded in %.1f s: %d stores, %d promotions (%s)", time.monotonic() - t0,
             len(state.stores), len(state.promotions), dict(counts))
    return state


def _read_to_end(consumer: Consumer, state: ProximityState, end: dict[tuple[str, int], int],
                 deadline: float) -> Counter[str]:
    counts: Counter[str] = Counter()
    pending = dict(end)
    while pending:
        if time.monotonic() > deadline:
            msg = f"the catalog topics were not read to their end offsets ({len(pending)} left)"
            raise CatalogError(msg)
        msgs = consumer.consume(5000, 0.2)
        for m in msgs:
            if m.error() is not None:
                counts["consumer_errors"] += 1
                log.warning("catalog: consumer error: %s", m.error())
                continue
            topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            try:
                state.apply(topic, m.key(), m.value())
                counts[topic] += 1
            except RecordError as exc:
                counts["invalid"] += 1
                log.warning("catalog: skipped a record of %s: %s", topic, exc.reason)
            end_offset = pending.get((topic, partition))
            if end_offset is not None and offset + 1 >= end_offset:
                del pending[(topic, partition)]
        if not msgs:  # compaction may have removed the last offsets: ask where we are
            for (name, p), high in list(pending.items()):
                pos = consumer.position([TopicPartition(name, p)])[0].offset
                if pos >= high:
                    del pending[(name, p)]
    return counts


@dataclass
class Step:
    """The worker's proximity step on one position: decode, match, and the rows to send.

    A bad record (undecodable, unknown store, invalid position) is skipped and counted, where the
    worker sends it to ``dead_letters``: the peers measure the path every good position takes.
    """

    state: ProximityState
    positions: int = 0
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def hits(self, raw: bytes | None, msg_ts: int) -> tuple[bytes, int, list[Hit]] | None:
        """``(uid bytes, ts, hits)`` of one position (ts: the position's, else the message's);
        each hit's row bytes are ``hit[4]``. None for a bad record."""
        try:
            pos = decode(CustomerLocation, raw)
        except RecordError:
            self.skipped["invalid"] += 1
            return None
        ts = pos.ts if pos.ts is not None else msg_ts
        try:
            hits = self.state.match_hits(pos, ts)
        except UnknownStore:
            self.skipped["outside_stores" if pos.store_id is None else "unknown_store"] += 1
            return None
        except GeoError:
            self.skipped["invalid_position"] += 1
            return None
        self.positions += 1
        self.rows += len(hits)
        return pos.uid.encode(), ts, hits

    def summary(self) -> str:
        return f"{self.positions:,} positions, {self.rows:,} rows, skipped {dict(self.skipped)}"


@dataclass(frozen=True)
class Args:
    input: str
    output: str
    state_dir: Path


def parse_args(description: str | None) -> Args:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", required=True, help="Topic of the positions.")
    parser.add_argument("--output", required=True, help="Topic of the NEARBY rows.")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="The framework's local state (default: a fresh temporary dir).")
    ns = parser.parse_args()
    state_dir = ns.state_dir or Path(tempfile.mkdtemp(prefix="instore-peer-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    return Args(ns.input, ns.output, state_dir)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
