"""A partition that stops moving while events wait on it: the worker's liveness check.

``StallWatch`` notices a partition whose processed offset has not moved for ``stall_s`` while
the topic holds later events; the worker then stops so that its supervisor restarts it (the
restarted worker resumes from the committed offsets). ``consumer_state`` is what the worker
logs when that happens, to find the cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from instore import groups
from instore.settings import Settings


@dataclass
class StallWatch:
    stall_s: float
    # partition -> (offset processed last, when it last moved)
    _seen: dict[int, tuple[int, float]] = field(default_factory=dict)

    def observe(self, now: float, assigned: set[int], processed: dict[int, int],
                ends: dict[int, int]) -> list[int]:
        """Partitions (of those assigned) stalled at ``now``. ``processed`` holds the last offset
        the agent handled per partition (-1: none yet), ``ends`` the topic's end offsets."""
        for p in list(self._seen):
            if p not in assigned:
                del self._seen[p]  # revoked: start over if it comes back
        stalled = []
        for p in sorted(assigned):
            offset = processed.get(p, -1)
            last = self._seen.get(p)
            if last is None or offset != last[0]:
                self._seen[p] = (offset, now)
                continue
            waiting = ends.get(p, 0) - 1 > offset  # an event after the last one handled
            if waiting and now - last[1] >= self.stall_s:
                stalled.append(p)
            elif not waiting:
                self._seen[p] = (offset, now)  # idle, not stalled
        return stalled


def _aiokafka(app: Any) -> tuple[Any, Any]:
    """The aiokafka consumer under Faust's consumer thread and its assignment (None, None
    before it started)."""
    aio = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(aio, "_fetcher", None)
    if fetcher is None:
        return None, None
    return aio, fetcher._subscriptions.subscription.assignment  # noqa: SLF001


def _topic_channels(app: Any, topic: str) -> list[Any]:
    """Faust's channels (with a stream queue) that read ``topic``."""
    return [chan for chan in getattr(app.topics, "_topics", ())
            if getattr(chan, "queue", None) is not None and topic in getattr(chan, "topics", ())]


class OffsetProbe:
    """End offsets and the worker group's committed offsets of one topic, read by a consumer of
    its own that never joins the group (blocking: call it from a thread)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._consumer: Any = None

    def read(self, partitions: set[int]) -> tuple[dict[int, int], dict[int, int]]:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        from instore.kafka import make_consumer  # noqa: PLC0415

        if self._consumer is None:
            self._consumer = make_consumer(self.settings, group_id=groups.worker(self.settings))
        c = self._consumer
        ends = {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=3)[1]
                for p in partitions}
        committed = {tp.partition: tp.offset for tp in
                     c.committed([TopicPartition(self.topic, p) for p in partitions], timeout=3)}
        return ends, committed


def consumer_state(app: Any, topic: str) -> dict[str, Any]:
    """What Faust's consumer thinks of ``topic``'s partitions: logged when a stall is detected,
    so that the cause can be read from the worker's log."""
    consumer = app.consumer
    mine = {tp for tp in consumer.assignment() if tp.topic == topic}

    def parts(tps: Any) -> list[int]:
        return sorted(tp.partition for tp in (tps or ()) if tp.topic == topic)

    state: dict[str, Any] = {
        "assigned": parts(mine),
        "active": parts(getattr(consumer, "_active_partitions", None)),
        "paused": parts(getattr(consumer, "_paused_partitions", None)),
        "buffered": parts(getattr(consumer, "_buffered_partitions", None)),
        "flow_active": getattr(consumer, "flow_active", None),
        "flow_control": app.flow_control.is_active(),
        "generation": app.consumer_generation_id,
        "read_offset": {tp.partition: o for tp, o in getattr(consumer, "_read_offset", {}).items()
                        if tp.topic == topic},
        "committed_offset": {tp.partition: o for tp, o in
                             getattr(consumer, "_committed_offset", {}).items()
                             if tp.topic == topic},
    }
    aio, assignment = _aiokafka(app)
    if aio is not None:
        try:
            state["aiokafka_paused"] = parts(aio.paused())
            state["aiokafka_position"] = {
                tp.partition: assignment.state_value(tp).position for tp in mine}
            state["fetched_waiting"] = parts(aio._fetcher._records)  # noqa: SLF001
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            state["aiokafka_error"] = repr(exc)
    state["queues"] = {
        repr(chan)[:60]: {"size": chan.queue.qsize(), "max": chan.queue.maxsize,
                          "pending_drop": len(chan.queue._pending_pressure_drop_callbacks)}  # noqa: SLF001
        for chan in _topic_channels(app, topic)}
    buffer = getattr(app.producer, "buffer", None)
    if buffer is not None:
        state["producer_buffer"] = {"size": buffer.size, "max": getattr(buffer, "max_messages", None)}
    state["tasks"] = task_waits()
    return state


def task_waits(limit: int = 40) -> list[str]:
    """Where each asyncio task of this loop waits: the innermost frame of its await chain."""
    import asyncio  # noqa: PLC0415

    out = []
    for task in list(asyncio.all_tasks())[:limit]:
        coro: Any = task.get_coro()
        where = getattr(coro, "__qualname__", repr(coro))
        inner = coro
        for _ in range(50):
            nxt = getattr(inner, "cr_await", None) or getattr(inner, "ag_await", None)
            if nxt is None or not hasattr(nxt, "cr_frame") and not hasattr(nxt, "ag_frame"):
                break
            inner = nxt
        frame = getattr(inner, "cr_frame", None) or getattr(inner, "ag_frame", None)
        if frame is not None:
            where += f" @ {frame.f_code.co_qualname}:{frame.f_lineno}"
        out.append(where)
    return out
