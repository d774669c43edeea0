"""The processing of one query, with no I/O: records in, changelog/stream records out.

``QueryCore.on_record(slot, key, window_start, row, rowtime)`` takes a decoded input record
(``row`` None = a tombstone) and calls ``emit(key_values, window_start, out_row, rowtime)``
(``out_row`` None = a tombstone) for every output record. The Kafka runner and the semantic
case tests both drive it.

One file, just over 500 lines: ``QueryCore`` is one object whose per-record paths (stream,
table, windowed and session aggregates, joins) share its state; the pieces that stand alone
(EXPLODE's emitters, the windowed join buffer, the aggregates) are already in their modules.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from stream_apps.ksqldb.explode import EmitEncoded, EmitMany, ExplodeEmitter
from stream_apps.ksqldb.functions import AGGREGATES, Agg, Count
from stream_apps.ksqldb.joins import WindowedJoin, hashable, unhashable
from stream_apps.ksqldb.plan import Plan

log = logging.getLogger(__name__)

# (key values, window start (or (start, end) of a session), row or None, rowtime)
Emit = Callable[[tuple, Any, "dict[str, Any] | None", int], None]


def _new_aggs(plan: Plan) -> list[Agg]:
    out: list[Agg] = []
    for a in plan.aggs:
        if a.name == "COUNT":
            out.append(Count(star=a.arg is None))
        else:
            out.append(AGGREGATES[a.name](*a.params))
    return out


class QueryCore:
    def __init__(
        self, plan: Plan, emit: Emit, clock: Callable[[], int] | None = None
    ) -> None:
        """``clock``: milliseconds of the clock that paces the outer-join sweep of
        stream-stream joins with a GRACE PERIOD (the wall clock by default; a test driver
        passes a fixed one, as Kafka Streams' TopologyTestDriver does)."""
        self.plan = plan
        self.emit = emit
        if plan.kind.endswith("_agg"):  # group keys are held hashable (arrays, structs)

            def emit_agg(key: tuple, ws: Any, row: dict[str, Any] | None, rowtime: int) -> None:
                emit(tuple([unhashable(v) for v in key]), ws, row, rowtime)

            self.emit = emit_agg
        self.kind = plan.kind
        n = len(plan.bindings)
        self.tables: list[dict[Any, dict[str, Any]]] = [{} for _ in range(n)]
        self.stream_time = -(2**63)
        self.dropped_late = 0  # windowed aggregation records past their window's grace
        self.errors = 0
        # table queries: last output per key (also what pull queries read)
        self.materialized: dict[Any, dict[str, Any]] = {}
        # table-table joins: join j -> fk value -> left keys
        self.fk_index: list[dict[Any, dict[Any, None]]] = [defaultdict(dict) for _ in range(n)]
        self.fk_of: list[dict[Any, Any]] = [{} for _ in range(n)]
        # table aggregations
        self.members: dict[tuple, OrderedDict[Any, tuple]] = {}
        self.member_group: dict[Any, tuple] = {}
        # stream aggregations: (group key, window start) -> (aggs)
        self.agg_state: dict[tuple, list[Agg]] = {}
        self.columns = plan.columns
        self.key_names = plan.key_names
        self._names = [c.name for c in plan.columns]
        self._tf_idx = [i for i, c in enumerate(plan.columns) if c.table_function]
        self._key_idx = [self._names.index(k) for k in plan.key_names]
        self.table_join_ops = [j for j in plan.joins if not j.stream]
        # a stream query's joins run as a chain of stages: stage i joins slot i + 1 to the
        # row built so far, by a table lookup or a windowed stream-stream join
        self.stages = plan.joins
        self.windowed: dict[int, WindowedJoin] = {}
        for i, j in enumerate(plan.joins):
            if j.stream:
                self.windowed[j.slot] = WindowedJoin(
                    j.kind,
                    j.before_ms,
                    j.after_ms,
                    j.grace_ms,
                    self._stage_emit(i, j.slot),
                    clock=clock,
                )
        self._stage_of = {j.slot: i for i, j in enumerate(plan.joins)}
        self.key_slot = plan.key_slot
        self._fk_join = any(j.foreign_key for j in self.table_join_ops)
        # EMIT FINAL: (close time, window start, seq, state key) and each open window's last
        # row context; SESSION windows: group key -> [(start, end, members' aggregate inputs)]
        self.emit_final = plan.select.emit_final
        self.final_heap: list[tuple[int, int, int, tuple]] = []
        self.final_rows: dict[tuple, tuple[tuple, int]] = {}
        self._final_seq = 0
        self.sessions: dict[tuple, list[tuple[int, int, list[list[Any]]]]] = {}
        self.outer_pk = (
            self.kind.startswith("table")
            and len(self.table_join_ops) == 1
            and self.table_join_ops[0].kind in ("RIGHT", "FULL")
        )
        self._stamped = False  # output timestamps from a column (stamp_from)
        self._explode = (
            None if plan.explode is None else ExplodeEmitter(plan.explode, self._names, self.key_names)
        )

    def stamp_from(self, column: str) -> None:
        """A sink declared WITH (TIMESTAMP='col'): each output record carries that column's
        value as its timestamp (a record whose column is null is dropped, as ksqlDB does)."""
        inner = self.emit
        self._stamped = True

        def emit(key: tuple, ws: Any, row: dict[str, Any] | None, rowtime: int) -> None:
            if row is not None:
                ts = row.get(column)
                if ts is None:
                    self.errors += 1
                    return
                rowtime = int(ts)
            inner(key, ws, row, rowtime)

        self.emit = emit

    def bind_encoded(
        self,
        value_names: list[str],
        encode_key: Callable[..., Any],
        emit: EmitEncoded,
        emit_many: EmitMany | None = None,
    ) -> None:
        """Let the fused EXPLODE path hand over encoded records: JSON values with
        ``value_names`` in that order (what ``Source.encode_value`` writes), keys encoded by
        ``encode_key(key_values, window_start)``."""
        if self._explode is not None and not self._stamped:
            self._explode.bind_encoded(value_names, encode_key, emit, emit_many)

    @property
    def _encoded(self) -> tuple[Callable[..., Any], EmitEncoded] | None:
        """The key encoder and sink the fused EXPLODE hands encoded records to (None: rows
        go out as dicts)."""
        return None if self._explode is None else self._explode.encoded

    # -- entry ---------------------------------------------------------------------------------
    def on_record(
        self, slot: int, key: tuple, wstart: int | None, row: dict[str, Any] | None, rowtime: int
    ) -> None:
        role = self.plan.bindings[slot].role
        if self.kind.startswith("table"):
            self._table_update(slot, key, row, rowtime)
            return
        if role == "table":
            k = hashable(key[0]) if len(key) == 1 else key
            if row is None:
                self.tables[slot].pop(k, None)
            else:
                self.tables[slot][k] = row
            return
        if row is None:  # a tombstone in a stream is ignored
            return
        if rowtime > self.stream_time:
            self.stream_time = rowtime
        if slot == 0:
            self._continue((row,), rowtime)
        else:  # the right side of a stream-stream join
            stage = self._stage_of[slot]
            j = self.stages[stage]
            assert j.right_key is not None
            k = j.right_key((*((None,) * slot), row))
            self.windowed[slot].process(1, k, row, rowtime)
        if self.final_heap:
            self._emit_closed()

    def _keyed(self, r: tuple, key: Any) -> tuple:
        """A joined row with its last slot, the join key (what the key column reads)."""
        return r if self.key_slot is None else (*r, {"ROWKEY": key})

    # -- stream side ----------------------------------------------------------------------------
    def _stage_emit(self, stage: int, slot: int) -> Callable[[Any, Any, Any, int], None]:
        def emit(left: Any, right: Any, key: Any, rowtime: int) -> None:
            r = left if left is not None else (None,) * slot
            self._continue((*r, right), rowtime, key, stage + 1)

        return emit

    def _continue(self, r: tuple, rowtime: int, key: Any = None, stage: int = 0) -> None:
        stages = self.stages
        while stage < len(stages):
            j = stages[stage]
            k = j.left_key(r)
            if j.stream:
                self.windowed[j.slot].process(0, k, r, rowtime)
                return
            if k is None:  # ksqlDB drops a stream record whose join key is null (even LEFT)
                return
            right = self.tables[j.slot].get(hashable(k))
            if right is None and j.kind == "INNER":
                return
            r = (*r, right)
            key = k
            stage += 1
        r = self._keyed(r, key)
        w = self.plan.where
        if w is not None and w(r) is not True:
            return
        if self.kind == "stream_agg":
            self._stream_aggregate(r, rowtime)
            return
        self._project_emit(r, rowtime)

    def _project_emit(self, r: tuple, rowtime: int) -> None:
        if self._explode is not None:
            self._explode.emit(r, rowtime, self.emit)
            return
        cols = self.columns
        emit = self.emit
        key_idx = self._key_idx
        if not self._tf_idx:
            values = [c.fn(r) for c in cols]
            emit(tuple([values[i] for i in key_idx]), None, dict(zip(self._names, values, strict=True)),
                 rowtime)
            return
        # Table functions of one SELECT are zipped: row i takes element i of each (null when an
        # array is shorter); the other columns repeat.
        values = [c.fn(r) for c in cols]
        tf = self._tf_idx
        arrays = [v if isinstance(v, list) else [] for v in (values[j] for j in tf)]
        n = max(len(a) for a in arrays)
        if n == 0:
            return
        names = self._names
        elems_rows = zip(*arrays, strict=True) if all(len(a) == n for a in arrays) else zip_longest(*arrays)
        for elems in elems_rows:
            row = values.copy()
            for j, v in zip(tf, elems, strict=True):
                row[j] = v
            emit(tuple([row[i] for i in key_idx]), None, dict(zip(names, row, strict=True)), rowtime)

    def _stream_aggregate(self, r: tuple, rowtime: int) -> None:
        gk = tuple([hashable(f(r)) for f in self.plan.group_fns])
        if any(v is None for v in gk):
            self.errors += 1  # ksqlDB drops rows with a null grouping key
            return
        plan = self.plan
        win = plan.window
        if win is not None and win.kind == "SESSION":
            self._session_aggregate(gk, r, rowtime)
            return
        if win is None:
            starts: list[int | None] = [None]
        else:
            size = win.size_ms
            adv = win.advance_ms or size
            last = rowtime - rowtime % adv
            starts = []
            s = last
            while s > rowtime - size and s >= 0:  # Kafka Streams: no window before 0
                starts.append(s)
                s -= adv
            starts.reverse()
        values = [a.arg(r) if a.arg is not None else None for a in plan.aggs]
        for ws in starts:
            if (
                win is not None
                and ws is not None
                and ws + win.size_ms + (win.grace_ms or 0) <= self.stream_time
            ):
                self.dropped_late += 1
                continue
            skey = (gk, ws)
            aggs = self.agg_state.get(skey)
            if aggs is None:
                aggs = _new_aggs(plan)
                self.agg_state[skey] = aggs
            for a, v in zip(aggs, values, strict=False):
                a.add(v)
            rr = r
            if ws is not None and win is not None:
                first = dict(r[0])
                first["WINDOWSTART"] = ws
                first["WINDOWEND"] = ws + win.size_ms
                rr = (first, *r[1:])
            if self.emit_final and ws is not None and win is not None:
                # EMIT FINAL: one row per window, once it closes (see _emit_closed)
                if skey not in self.final_rows:
                    close = ws + win.size_ms + (win.grace_ms or 0)
                    heapq.heappush(self.final_heap, (close, ws, self._final_seq, skey))
                    self._final_seq += 1
                self.final_rows[skey] = (rr, rowtime)
                continue
            self._emit_agg(gk, ws, rr, [a.result() for a in aggs], rowtime)

    def _emit_closed(self) -> None:
        """EMIT FINAL: the windows whose end + grace is at or before stream time are closed
        (a record for them would be dropped as late): their final row goes out, in window start
        order, and their state is dropped."""
        heap = self.final_heap
        while heap and heap[0][0] <= self.stream_time:
            _close, ws, _seq, skey = heapq.heappop(heap)
            rr, rowtime = self.final_rows.pop(skey)
            aggs = self.agg_state.pop(skey)
            self._emit_agg(skey[0], ws, rr, [a.result() for a in aggs], rowtime)

    # -- session windows ------------------------------------------------------------------------
    def _session_aggregate(self, gk: tuple, r: tuple, rowtime: int) -> None:
        """SESSION windows (Kafka Streams' session aggregation, as ksqlDB runs it): a record
        joins every session of its key that it is within the inactivity gap of, merging them
        into one session [earliest, latest record time]; each merged-away session gets a
        tombstone, then the merged session's row goes out (timestamped with its end). A record
        whose merged session ended more than gap + grace before stream time is dropped."""
        win = self.plan.window
        assert win is not None
        gap = win.size_ms
        grace = win.grace_ms or 0
        sessions = self.sessions.setdefault(gk, [])
        overlapping = [x for x in sessions if x[0] - gap <= rowtime <= x[1] + gap]
        start = min([rowtime, *(x[0] for x in overlapping)])
        end = max([rowtime, *(x[1] for x in overlapping)])
        if end < self.stream_time - grace - gap:
            self.dropped_late += 1
            return
        values = [a.arg(r) if a.arg is not None else None for a in self.plan.aggs]
        members: list[list[Any]] = []
        for x in sorted(overlapping, key=lambda x: x[0]):
            sessions.remove(x)
            members.extend(x[2])
            mkey = (gk, (x[0], x[1]))
            self.materialized.pop(mkey, None)
            self.emit(self._agg_key(gk, None), (x[0], x[1]), None, x[1])
        members.append(values)  # merged sessions' inputs in session order, then this record
        session = (start, end, members)
        sessions.append(session)
        aggs = _new_aggs(self.plan)
        for vals in members:
            for a, v in zip(aggs, vals, strict=False):
                a.add(v)
        first = dict(r[0])
        first["WINDOWSTART"] = start
        first["WINDOWEND"] = end
        self._emit_agg(gk, (start, end), (first, *r[1:]), [a.result() for a in aggs], end)

    def _agg_key(self, gk: tuple, out: dict[str, Any] | None) -> tuple:
        if out is None:
            return gk
        return tuple(out.get(k, gk[i] if i < len(gk) else None)
                     for i, k in enumerate(self.key_names))

    def _bounds(self, ws: Any) -> tuple[int, int]:
        if isinstance(ws, tuple):
            return ws
        assert self.plan.window is not None
        return ws, ws + self.plan.window.size_ms

    def _emit_agg(
        self, gk: tuple, ws: Any, r: tuple, results: list[Any], rowtime: int
    ) -> None:
        rr = (*r, results)
        mkey = gk if ws is None else (gk, ws)
        if self.plan.having is not None and self.plan.having(rr) is not True:
            if mkey in self.materialized:
                del self.materialized[mkey]
                self.emit(gk, ws, None, rowtime)
            return
        out = {c.name: c.fn(rr) for c in self.columns}
        if ws is not None and self.plan.window is not None:
            out_w = dict(out)
            out_w["WINDOWSTART"], out_w["WINDOWEND"] = self._bounds(ws)
            self.materialized[mkey] = out_w
        else:
            self.materialized[mkey] = out
        self.emit(
            tuple(out.get(k, gk[i] if i < len(gk) else None) for i, k in enumerate(self.key_names)),
            ws,
            out,
            rowtime,
        )

    # -- table side -----------------------------------------------------------------------------
    def _table_update(
        self, slot: int, key: tuple, row: dict[str, Any] | None, rowtime: int
    ) -> None:
        k = hashable(key[0]) if len(key) == 1 else key
        state = self.tables[slot]
        if row is None:
            if k not in state:
                return
            del state[k]
        else:
            state[k] = row
        if self.outer_pk:  # RIGHT / FULL primary-key table-table join: both sides keyed alike
            self._recompute(k, rowtime)
            return
        if slot == 0:
            for j in self.table_join_ops:
                old = self.fk_of[j.slot].pop(k, None)
                if old is not None:
                    s = self.fk_index[j.slot].get(old)
                    if s is not None:
                        s.pop(k, None)
                        if not s:
                            del self.fk_index[j.slot][old]
                if row is not None:
                    fk = hashable(j.left_key((row,)))
                    if fk is not None:
                        self.fk_of[j.slot][k] = fk
                        self.fk_index[j.slot][fk][k] = None
            self._recompute(k, rowtime, left_deleted=row is None)
            return
        for lk in list(self.fk_index[slot].get(k, ())):
            self._recompute(lk, rowtime)

    def _joined_pk(self, k: Any) -> tuple | None:
        """Primary-key table-table join of two tables, any kind: the rows of both sides under
        the join key ``k``."""
        left = self.tables[0].get(k)
        right = self.tables[1].get(k)
        kind = self.table_join_ops[0].kind
        keep = (
            (left is not None and right is not None)
            if kind == "INNER"
            else left is not None
            if kind == "LEFT"
            else right is not None
            if kind == "RIGHT"
            else left is not None or right is not None
        )
        if not keep:
            return None
        r = self._keyed((left, right), unhashable(k))
        w = self.plan.where
        if w is not None and w(r) is not True:
            return None
        return r

    def _joined(self, k: Any) -> tuple | None:
        if self.outer_pk:
            return self._joined_pk(k)
        row0 = self.tables[0].get(k)
        if row0 is None:
            return None
        r: tuple = (row0,)
        for j in self.table_join_ops:
            fk = self.fk_of[j.slot].get(k)
            if fk is None:  # a null foreign key joins nothing, LEFT included (pre KIP-962)
                return None
            right = self.tables[j.slot].get(fk)
            if right is None and j.kind == "INNER":
                return None
            r = (*r, right)
        r = self._keyed(r, unhashable(k))
        w = self.plan.where
        if w is not None and w(r) is not True:
            return None
        return r

    def _recompute(self, k: Any, rowtime: int, left_deleted: bool = False) -> None:
        """Re-evaluate the row of key ``k``. Every change is emitted, an unchanged row too (a
        KTable forwards each update); a tombstone when there was a row, and for a deleted
        left row of a foreign-key join always (Kafka Streams' subscription join does)."""
        r = self._joined(k)
        if self.kind == "table_agg":
            self._table_aggregate(k, r, rowtime)
            return
        if r is None:
            had = self.materialized.pop(k, None) is not None
            if had or (left_deleted and self._fk_join):
                key = unhashable(k)
                self.emit(key if isinstance(key, tuple) else (key,), None, None, rowtime)
            return
        out = {c.name: c.fn(r) for c in self.columns}
        self.materialized[k] = out
        self.emit(tuple(out[n] for n in self.key_names), None, out, rowtime)

    def _table_aggregate(self, k: Any, r: tuple | None, rowtime: int) -> None:
        # ksqlDB undoes the old row's contribution and adds the new one; a group whose last row
        # left stays with the aggregates of no rows (COUNT 0): use HAVING COUNT(*) > 0 to drop it.
        affected: dict[tuple, tuple] = {}
        old = self.member_group.pop(k, None)
        if old is not None:
            grp = self.members.get(old)
            if grp is not None:
                old_r = grp.pop(k, None)
                if old_r is not None:
                    affected[old] = old_r
        if r is not None:
            gk = tuple([hashable(f(r)) for f in self.plan.group_fns])
            if any(v is None for v in gk):
                self.errors += 1
            else:
                self.members.setdefault(gk, OrderedDict())[k] = r
                self.member_group[k] = gk
                affected[gk] = r
        for gk, rep in affected.items():
            grp = self.members.get(gk) or OrderedDict()
            aggs = _new_aggs(self.plan)
            last_r: tuple = rep
            for rr in grp.values():
                for a, spec in zip(aggs, self.plan.aggs, strict=False):
                    a.add(spec.arg(rr) if spec.arg is not None else None)
                last_r = rr
            if not grp:
                self.members.pop(gk, None)
            self._emit_agg(gk, None, last_r, [a.result() for a in aggs], rowtime)
