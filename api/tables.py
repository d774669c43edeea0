"""The API's in-memory view of the compacted topics: catalog, promotions and consents.

A background thread reads ``stores_products``, ``products_promotions`` and
``shopper_consents`` from the beginning with ``assign()`` (no consumer group to join) and keeps
the latest value per key; a tombstone removes the key. The API's own writes are applied at
once as well (``apply``), so a product created through the API can be promoted right away.
A record another program wrote a moment ago (``instore produce catalog``, a connector) is
found with ``sync``: it waits until the reader has read everything the topic held when it was
called, so "not in the catalog" is only answered after looking at the topic's end.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from instore import records as r
from instore import topics as t
from instore.kafka import ensure_topics, make_consumer
from instore.settings import Settings

log = logging.getLogger(__name__)

VIEWED: tuple[t.Topic, ...] = (t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS, t.SHOPPER_CONSENTS)


@dataclass
class _Sync:
    """A caller waiting until the reader has read ``topic`` up to its end offsets as the
    reader found them once it took the request."""
    topic: str
    done: threading.Event = field(default_factory=threading.Event)
    ends: dict[int, int] | None = None  # partition -> end offset, set by the reader


class TableView:
    """Promotions are kept as records (there are few); products and consents as their JSON
    bytes (there can be millions), decoded when read."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.RLock()
        self.promotions: dict[str, r.Promotion] = {}
        self._catalog: dict[str, dict[int, bytes]] = defaultdict(dict)  # store -> sku -> JSON
        self._consents: dict[str, bytes] = {}
        self._skus: Counter[int] = Counter()
        self._segments: Counter[str] = Counter()
        self.caught_up = threading.Event()
        self.connected = threading.Event()
        self.invalid = 0
        self._stop = threading.Event()
        self._syncs: list[_Sync] = []
        self._thread = threading.Thread(target=self._run, name="api-table-view", daemon=True)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self.caught_up.wait(timeout_s)

    def sync(self, topic: t.Topic, timeout_s: float) -> bool:
        """Wait until the view holds everything written to ``topic`` before this call (False
        when that took longer than ``timeout_s``, e.g. with the broker away)."""
        request = _Sync(topic.name)
        with self._lock:
            self._syncs.append(request)
        return request.done.wait(timeout_s)

    # reads -----------------------------------------------------------------------------
    def sku_known(self, sku: int) -> bool:
        with self._lock:
            return self._skus[sku] > 0

    def segment_known(self, segment: str) -> bool:
        with self._lock:
            return self._segments[segment] > 0

    def segments(self) -> list[str]:
        with self._lock:
            return sorted(s for s, n in self._segments.items() if n > 0)

    def product(self, store_id: str, sku: int) -> r.StoreProduct | None:
        with self._lock:
            raw = self._catalog.get(store_id, {}).get(sku)
        return None if raw is None else _product(raw)

    def store_counts(self) -> dict[str, int]:
        with self._lock:
            return {store: len(skus) for store, skus in self._catalog.items() if skus}

    def products_of(self, store_id: str | None = None, segment: str | None = None,
                    limit: int | None = None) -> list[r.StoreProduct]:
        """Products of one store (or all), optionally of one segment, ordered by store and
        SKU, at most ``limit``."""
        with self._lock:
            stores = [store_id] if store_id is not None else sorted(self._catalog)
            shelves = [sorted(self._catalog.get(sid, {}).items()) for sid in stores]
        out: list[r.StoreProduct] = []
        for shelf in shelves:
            for _, raw in shelf:
                data = orjson.loads(raw)
                if segment is not None and data["segment"] != segment:
                    continue
                out.append(r.StoreProduct.model_construct(**data))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    def consent(self, uid: str) -> r.ShopperConsent | None:
        with self._lock:
            raw = self._consents.get(uid)
        return None if raw is None else r.ShopperConsent.model_validate(orjson.loads(raw))

    # writes ----------------------------------------------------------------------------
    def apply(self, topic: t.Topic, key: str, record: r.Record | None,
              raw: bytes | None = None) -> None:
        with self._lock:
            if topic is t.STORES_PRODUCTS:
                self._apply_product(key, record, raw)
            elif topic is t.PRODUCTS_PROMOTIONS:
                if isinstance(record, r.Promotion):
                    self.promotions[key] = record
                else:
                    self.promotions.pop(key, None)
            elif topic is t.SHOPPER_CONSENTS:
                if isinstance(record, r.ShopperConsent):
                    # Last writer wins by updated_at: the API applies its own writes at once,
                    # and the topic reader may deliver an older record of the same shopper after.
                    held = self._consents.get(key)
                    if held is not None and orjson.loads(held).get("updated_at", 0) > record.updated_at:
                        return
                    self._consents[key] = raw or record.to_json()
                else:
                    self._consents.pop(key, None)

    def _apply_product(self, key: str, record: r.Record | None, raw: bytes | None) -> None:
        store_id, _, sku_text = key.rpartition(":")
        if isinstance(record, r.StoreProduct):
            store_id, sku = record.store_id, record.sku
        elif sku_text.isdigit():
            sku = int(sku_text)
        else:
            return
        old = self._catalog[store_id].pop(sku, None)
        if old is not None:
            prev = orjson.loads(old)
            self._skus[sku] -= 1
            self._segments[prev["segment"]] -= 1
        if isinstance(record, r.StoreProduct):
            self._catalog[store_id][sku] = raw or record.to_json()
            self._skus[sku] += 1
            self._segments[record.segment] += 1
        elif not self._catalog[store_id]:
            del self._catalog[store_id]

    # the reader ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
                return
            except KafkaException as exc:
                log.warning("table view: broker unavailable (%s); retrying", exc.args[0])
                self.connected.clear()
                self._stop.wait(2.0)

    def _follow(self) -> None:
        ensure_topics(self._settings)  # the whole contract: the API writes to several topics
        extra: dict[str, Any] = {"fetch.wait.max.ms": 100}
        consumer = make_consumer(self._settings, None, **extra)
        try:
            md = consumer.list_topics(timeout=10)
            tps = [TopicPartition(topic.name, p, OFFSET_BEGINNING)
                   for topic in VIEWED for p in md.topics[topic.name].partitions]
            pending: dict[tuple[str, int], int] = {}
            for tp in tps:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=10)
                if high > 0:
                    pending[(tp.topic, tp.partition)] = high
            consumer.assign(tps)
            self.connected.set()
            log.info("table view: following %d partitions", len(tps))
            if not pending:
                self.caught_up.set()
            by_name = {topic.name: topic for topic in VIEWED}
            while not self._stop.is_set():
                msgs = consumer.consume(500, 0.2)
                if not msgs and pending:
                    for tp in consumer.position([TopicPartition(a, b) for a, b in pending]):
                        if tp.offset >= pending[(tp.topic, tp.partition)]:
                            del pending[(tp.topic, tp.partition)]
                    if not pending:
                        self.caught_up.set()
                        log.info("table view: caught up (%d products, %d promotions)",
                                 sum(self.store_counts().values()), len(self.promotions))
                for msg in msgs:
                    name, partition, offset = msg.topic(), msg.partition(), msg.offset()
                    if msg.error() is not None or name is None or offset is None:
                        continue
                    self._ingest(by_name[name], msg.key(), msg.value())
                    where = (name, partition or 0)
                    if where in pending and offset + 1 >= pending[where]:
                        del pending[where]
                        if not pending:
                            self.caught_up.set()
                            log.info("table view: caught up (%d products, %d promotions)",
                                     sum(self.store_counts().values()), len(self.promotions))
                # after ingesting: the position already counts what this consume returned
                self._serve_syncs(consumer, md)
        finally:
            consumer.close()

    def _serve_syncs(self, consumer: Any, md: Any) -> None:
        """Give new sync requests the topic's end offsets; release those the reader's position
        has reached (positions are local, the end offsets one request to the broker)."""
        with self._lock:
            waiting = list(self._syncs)
        for request in waiting:
            if request.ends is None:
                request.ends = {}
                for p in md.topics[request.topic].partitions:
                    _low, high = consumer.get_watermark_offsets(
                        TopicPartition(request.topic, p), timeout=5)
                    request.ends[p] = high
            behind = [TopicPartition(request.topic, p) for p, end in request.ends.items() if end > 0]
            if behind and any(tp.offset < request.ends[tp.partition]
                              for tp in consumer.position(behind)):
                continue
            request.done.set()
            with self._lock:
                self._syncs.remove(request)

    def _ingest(self, topic: t.Topic, raw_key: bytes | None, raw_value: bytes | None) -> None:
        if raw_key is None:
            self.invalid += 1
            return
        key = raw_key.decode("utf-8", errors="replace")
        if raw_value is None:
            self.apply(topic, key, None)
            return
        try:
            record: Any = r.decode(topic.record, raw_value)
        except r.RecordError:
            self.invalid += 1
            return
        self.apply(topic, key, record)  # stored normalised (to_json), so reads can skip validation



def _product(raw: bytes) -> r.StoreProduct:
    # validated when it was read from the topic or written by the API
    return r.StoreProduct.model_construct(**orjson.loads(raw))
