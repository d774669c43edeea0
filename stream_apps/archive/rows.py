"""From Kafka records to archive rows, and data-quality counts: pure, tested on plain lists.

``decode`` turns one topic partition's records into typed records (or counts them invalid),
``rows`` places each in its (dataset, date, store) group with the uid replaced by the
shopper's pseudonym (``instore.archive``), and ``Quality`` counts what the data-quality
metrics need: records per source topic, dead letters per source topic and reason, and
positions that arrive late or out of order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from instore import archive as a
from instore import records as r

Group = tuple[str, date, str | None]  # (dataset name, day, store_id or None)


@dataclass(frozen=True)
class Message:
    """One Kafka record as the archiver sees it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass
class Decoded:
    message: Message
    record: r.Record | None  # None: a tombstone of a compacted table


@dataclass
class Decoding:
    items: list[Decoded] = field(default_factory=list)
    invalid: int = 0  # not archived: the worker or the API already dead-lettered them

    def uids(self) -> set[str]:
        """The shoppers whose pseudonyms the rows need."""
        out = set()
        for item in self.items:
            uid = getattr(item.record, "uid", None)
            if uid:
                out.add(uid)
        return out


def decode(dataset: a.Dataset, messages: Iterable[Message]) -> Decoding:
    out = Decoding()
    model = dataset.topic.record
    for msg in messages:
        if msg.value is None:
            if dataset.table:
                out.items.append(Decoded(msg, None))
            else:
                out.invalid += 1
            continue
        try:
            out.items.append(Decoded(msg, r.decode(model, msg.value)))
        except r.RecordError:
            out.invalid += 1
    return out


def rows(dataset: a.Dataset, decoding: Decoding,
         keys: Mapping[str, bytes | None]) -> dict[Group, list[dict[str, Any]]]:
    """Rows grouped by (dataset, day, store). ``keys`` maps each uid to the shopper's archive
    key, or None for a shopper erased before the row was archived: identity columns stay
    null then."""
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for item in decoding.items:
        msg, rec = item.message, item.record
        data = _fields(dataset, msg, rec, keys)
        ts = data.get(dataset.time_field) if dataset.time_field else None
        day = a.day_of(ts if isinstance(ts, int) else msg.timestamp_ms)
        store = data.get(dataset.store_field) if dataset.store_field else None
        if dataset.table and rec is None and dataset.store_field:
            store = (msg.key or b"").decode("utf-8", "replace").split(":", 1)[0] or None
        groups[(dataset.name, day, store)].append(data)
    return dict(groups)


def _fields(dataset: a.Dataset, msg: Message, rec: r.Record | None,
            keys: Mapping[str, bytes | None]) -> dict[str, Any]:
    data: dict[str, Any] = {} if rec is None else rec.model_dump()
    if dataset is a.DEAD_LETTERS:
        error = str(data.get("error", ""))
        data = {"source_topic": data.get("source_topic"), "source_partition": data.get("partition"),
                "source_offset": data.get("offset"), "reason": r.dead_letter_reason(error),
                "error": error[:500]}
    uid = data.pop("uid", None)
    if "shopper" in dataset.column_names:
        key = keys.get(uid) if uid else None
        data["shopper"] = a.shopper_id(key) if key else None
        if "offer_ref" in dataset.column_names:
            offer_id = data.pop("offer_id", None)
            data["offer_ref"] = a.offer_ref(key, offer_id) if key and offer_id else None
    if dataset.table:
        data["key"] = msg.key.decode("utf-8", "replace") if msg.key is not None else None
        data["deleted"] = rec is None
    data["kafka_partition"] = msg.partition
    data["kafka_offset"] = msg.offset
    data["kafka_ts"] = msg.timestamp_ms
    return {name: data.get(name) for name in dataset.column_names}


# Data quality ---------------------------------------------------------------------------------

def minute_of(ts_ms: int) -> int:
    return ts_ms // 60_000


@dataclass
class Quality:
    """Counts per minute bucket (of the Kafka record time): ``records:<topic>`` for every record
    of a source topic, ``dead:<topic>:<reason>`` for every dead letter, and, for positions,
    ``late`` (event time more than ``late_ms`` behind the record's arrival) and
    ``out_of_order`` (more than ``late_ms`` behind the same shopper's newest position)."""

    late_ms: int
    max_shoppers: int = 200_000
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    _newest: dict[str, int] = field(default_factory=dict)

    def observe(self, dataset: a.Dataset, messages: Iterable[Message], decoding: Decoding) -> None:
        if dataset is not a.DEAD_LETTERS:
            for msg in messages:
                self.counts[(minute_of(msg.timestamp_ms), f"records:{msg.topic}")] += 1
        for item in decoding.items:
            rec, msg = item.record, item.message
            if isinstance(rec, r.DeadLetter):
                reason = r.dead_letter_reason(rec.error)
                self.counts[(minute_of(msg.timestamp_ms), f"dead:{rec.source_topic}:{reason}")] += 1
            elif isinstance(rec, r.CustomerLocation) and rec.ts is not None:
                self._position(rec, msg)

    def _position(self, rec: r.CustomerLocation, msg: Message) -> None:
        assert rec.ts is not None
        bucket = minute_of(msg.timestamp_ms)
        if msg.timestamp_ms - rec.ts > self.late_ms:
            self.counts[(bucket, "late")] += 1
        newest = self._newest.get(rec.uid)
        if newest is not None and newest - rec.ts > self.late_ms:
            self.counts[(bucket, "out_of_order")] += 1
        if newest is None or rec.ts > newest:
            if newest is None and len(self._newest) >= self.max_shoppers:
                self._newest.clear()  # bounded memory: forget everyone, start over
            self._newest[rec.uid] = rec.ts

    def take(self) -> Counter[tuple[int, str]]:
        out, self.counts = self.counts, Counter()
        return out
