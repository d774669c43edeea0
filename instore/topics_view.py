"""What `instore topics list|tail` shows, as pure functions (no I/O): the list's rows and a record
as a reader wants it (JSON value decoded, dead letters with their reason first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from instore import topics as t


@dataclass(frozen=True)
class TopicRow:
    name: str
    kind: str  # stream / table from the contract, "internal" or "other" otherwise
    partitions: int
    replicas: int
    records: int  # end - start offsets summed: what the topic holds now
    cleanup: str
    retention_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "partitions": self.partitions,
                "replicas": self.replicas, "records": self.records, "cleanup": self.cleanup,
                "retention_ms": self.retention_ms}


def kind_of(name: str) -> str:
    topic = t.BY_NAME.get(name)
    if topic is not None:
        return topic.kind
    return "internal" if name.startswith("_") or name.endswith("-changelog") else "other"


def start_offsets(low: int, high: int, last: int, from_beginning: bool) -> int:
    """Where to start reading a partition: its first record, or its last ``last`` records."""
    if from_beginning:
        return low
    return max(low, high - last)


def record_view(topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, ts_ms: int | None) -> dict[str, Any]:
    """One record for a reader: its place, key, time and value (JSON decoded when it is JSON,
    else text); a tombstone has value null; a dead letter shows its reason first."""
    out: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset,
                           "key": key.decode(errors="replace") if key is not None else None,
                           "ts": ts_ms}
    if value is None:
        out["value"] = None
        out["tombstone"] = True
        return out
    try:
        decoded: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        decoded = value.decode(errors="replace")
    if topic == t.DEAD_LETTERS.name and isinstance(decoded, dict) and "error" in decoded:
        out["reason"] = decoded["error"]
    out["value"] = decoded
    return out
