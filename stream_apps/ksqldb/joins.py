"""A stream-stream join over record timestamps, as Kafka Streams runs the joins ksqlDB plans
(``KStreamKStreamJoin`` with ``JoinWindows``): plain Python on plain rows.

- Each side keeps its records in a window store whose retention is the window size (before +
  after) plus the grace period, measured against the highest timestamp that side has seen: an
  older record is invisible to the other side's lookups.
- A record looks up the other side's records with the same key and a timestamp within
  ``[ts - before, ts + after]`` (the right side looks the other way) and emits one joined row
  per match, with the larger of the two timestamps.
- Without ``GRACE PERIOD`` ksqlDB builds ``JoinWindows.of(before)`` (grace: 24 h minus twice
  the window, never negative) and an outer side that matches nothing is emitted padded with
  nulls at once (a later match is emitted too). With ``GRACE PERIOD`` ksqlDB builds
  ``ofTimeDifferenceAndGrace``: such a record waits in an outer store and is emitted (with its
  own timestamp) once stream time passes its window and grace, unless it matched meanwhile; the
  store is swept when a record at the current stream time arrives, at most once per
  ``emit_interval_ms`` of the clock (Kafka Streams' internal default, 1 s).
- RIGHT joins run as ksqlDB runs them: the right stream left-joined to the left one with the
  same window; FULL joins are outer on both sides. A null join key on an outer side is emitted
  padded with nulls (Kafka Streams 3.7+, KIP-962); on an inner side it is dropped.

Stream time is the highest timestamp either side has seen, never the wall clock.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import orjson

LEGACY_GRACE_MS = 24 * 3600 * 1000  # JoinWindows.of(): 24 h minus the window
EMIT_INTERVAL_MS = 1000  # Kafka Streams' emit.interval.ms.kstreams.outer.join.spurious.results.fix
_LONG_MAX = 2**63 - 1

# emit(left_row | None, right_row | None, key, timestamp)
Emit = Callable[[Any, Any, Any, int], None]


def _long(v: int) -> int:
    """Java long arithmetic (Kafka Streams adds to Long.MAX_VALUE and relies on the wrap)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _key_bytes(key: Any) -> bytes:
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS)


def hashable(key: Any) -> Any:
    """A dict key for a join key of any SQL type (arrays and structs included)."""
    if isinstance(key, list | dict):
        return ("\0json", _key_bytes(key))
    return key


def unhashable(key: Any) -> Any:
    """The join key ``hashable`` wrapped, as it was."""
    if isinstance(key, tuple) and len(key) == 2 and key[0] == "\0json":
        return orjson.loads(key[1])
    return key


class WindowedJoin:
    """One stream-stream join. ``kind``: INNER | LEFT | RIGHT | FULL; ``grace_ms`` None when
    the statement gives no GRACE PERIOD."""

    def __init__(
        self,
        kind: str,
        before_ms: int,
        after_ms: int,
        grace_ms: int | None,
        emit: Emit,
        clock: Callable[[], int] | None = None,
        emit_interval_ms: int = EMIT_INTERVAL_MS,
    ) -> None:
        self.kind = kind
        self.emit = emit
        self.clock = clock if clock is not None else _wall_ms
        self.emit_interval_ms = emit_interval_ms
        self.spurious_fix = grace_ms is not None
        self.grace = grace_ms if grace_ms is not None else max(
            LEGACY_GRACE_MS - 2 * before_ms, 0
        )
        self.windows_before = before_ms
        self.windows_after = after_ms
        self.retention = before_ms + after_ms + self.grace
        # Kafka Streams' sides: "this" of leftJoin; RIGHT swaps the two streams
        self.ks_left = 1 if kind == "RIGHT" else 0  # the SQL side that is KS-left
        self.outer = {
            0: kind in ("LEFT", "FULL") if self.ks_left == 0 else kind == "FULL",
            1: kind in ("RIGHT", "FULL") if self.ks_left == 1 else kind == "FULL",
        }
        # SQL side -> (look back, look ahead) of its lookups
        ks_right = 1 - self.ks_left
        self.bounds = {self.ks_left: (before_ms, after_ms), ks_right: (after_ms, before_ms)}
        self.stores: list[dict[Any, list[tuple[int, Any]]]] = [defaultdict(list), defaultdict(list)]
        self.observed = [-(2**63), -(2**63)]
        self.stream_time = -1  # ConsumerRecord.NO_TIMESTAMP
        self.min_time = _LONG_MAX
        self.next_emit = 0
        # outer store: (ts, KS side flag: right 0 / left 1, key bytes) -> [(key, row)]
        self.outer_store: dict[tuple[int, int, bytes], list[tuple[Any, Any]]] = {}
        self._puts = 0

    # -- records -------------------------------------------------------------------------------
    def process(self, side: int, key: Any, row: Any, ts: int) -> None:
        """A record of SQL side ``side`` (0 left, 1 right) with join key ``key``."""
        if ts > self.stream_time:
            self.stream_time = ts
        if key is None:
            if self.outer[side]:
                self._emit_unmatched(side, key, row, ts)
            return
        if ts == self.stream_time and self.spurious_fix:
            self._emit_non_joined(side)
        look_back, look_ahead = self.bounds[side]
        time_from = max(0, ts - look_back)
        time_to = max(0, ts + look_ahead)
        other = 1 - side
        visible_from = max(time_from, self.observed[other] - self.retention + 1)
        hk = hashable(key)
        kb = _key_bytes(key) if self.spurious_fix else b""  # the outer store's key
        matched = False
        if time_to >= visible_from:
            for t, orow in sorted(
                (it for it in self.stores[other].get(hk, ()) if visible_from <= it[0] <= time_to),
                key=lambda it: it[0],
            ):
                matched = True
                if self.spurious_fix:
                    self.outer_store.pop((t, self._flag(other), kb), None)
                left, right = (row, orow) if side == 0 else (orow, row)
                self.emit(left, right, key, max(ts, t))
        if self.outer[side] and not matched:
            if not self.spurious_fix or time_to < self.stream_time:
                self._emit_unmatched(side, key, row, ts)
            else:
                self.min_time = min(self.min_time, ts)
                slot = (ts, self._flag(side), kb)
                self.outer_store.setdefault(slot, []).append((key, row))
        # the record joins its own side's window store after the lookup
        if ts > self.observed[side]:
            self.observed[side] = ts
        if ts >= self.observed[side] - self.retention + 1:
            self.stores[side][hk].append((ts, row))
        self._puts += 1
        if self._puts % 1024 == 0:
            self._purge()

    def _flag(self, side: int) -> int:
        return 1 if side == self.ks_left else 0

    def _emit_unmatched(self, side: int, key: Any, row: Any, ts: int) -> None:
        if side == 0:
            self.emit(row, None, key, ts)
        else:
            self.emit(None, row, key, ts)

    def _emit_non_joined(self, side: int) -> None:
        _, look_ahead = self.bounds[side]
        if _long(self.min_time + look_ahead + self.grace) >= self.stream_time:
            return
        now = self.clock()
        if now < self.next_emit:
            return
        self.next_emit = now + self.emit_interval_ms
        self.min_time = _LONG_MAX
        left_open = right_open = False
        for slot in sorted(self.outer_store):
            ts, flag, _ = slot
            self.min_time = ts
            if left_open and right_open:
                break
            look_back = self.windows_after if flag == 1 else self.windows_before
            if _long(self.min_time + look_back + self.grace) >= self.stream_time:
                if flag == 1:
                    left_open = True
                else:
                    right_open = True
                continue
            sql_side = self.ks_left if flag == 1 else 1 - self.ks_left
            for key, row in self.outer_store.pop(slot):
                self._emit_unmatched(sql_side, key, row, ts)

    def _purge(self) -> None:
        for side in (0, 1):
            horizon = self.observed[side] - self.retention + 1
            store = self.stores[side]
            for k in list(store):
                items = store[k]
                if items and min(t for t, _ in items) < horizon:
                    keep = [it for it in items if it[0] >= horizon]
                    if keep:
                        store[k] = keep
                    else:
                        del store[k]


class TimestampOrder:
    """Kafka Streams' record choice across the partitions of a task: the buffered record with
    the smallest timestamp goes first, and a partition that is known to have more records
    (``lagging``) but none buffered holds the others back for at most ``max_idle_ms``
    (max.task.idle.ms), so a stream-stream join sees both streams in timestamp order, as
    ksqlDB does, even when one topic's backlog arrives before the other's."""

    def __init__(self, partitions: list[Any], max_idle_ms: int = 100) -> None:
        self.buffers: dict[Any, deque[tuple[int, int, Any]]] = {p: deque() for p in partitions}
        self.max_idle_ms = max_idle_ms
        self._seq = 0
        self._blocked_since: float | None = None

    def add(self, partition: Any, ts: int, record: Any) -> None:
        self._seq += 1
        self.buffers.setdefault(partition, deque()).append((ts, self._seq, record))

    def take(self, lagging: Callable[[Any], bool], now_ms: float) -> list[Any]:
        """The records that may be processed now, in order (``lagging`` is asked at most once
        per partition: nothing new is fetched meanwhile)."""
        out: list[Any] = []
        lag: dict[Any, bool] = {}

        def behind(p: Any) -> bool:
            if p not in lag:
                lag[p] = lagging(p)
            return lag[p]

        while True:
            heads = [(b[0][0], b[0][1], p) for p, b in self.buffers.items() if b]
            if not heads:
                self._blocked_since = None
                return out
            if any(not b and behind(p) for p, b in self.buffers.items()):
                if self._blocked_since is None:
                    self._blocked_since = now_ms
                if now_ms - self._blocked_since < self.max_idle_ms:
                    return out
            else:
                self._blocked_since = None
            _, _, p = min(heads)
            out.append(self.buffers[p].popleft()[2])
