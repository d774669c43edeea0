"""A partition that stops moving while events wait on it: the worker's liveness check.

After a worker is SIGKILLed and restarted on the embedded broker, Faust sometimes drops the
records it fetched while it restored its tables and never processes that partition again (the
worker looks ready, its threads are idle, its committed offsets stay put while positions pile
up). ``StallWatch`` notices a partition whose processed offset has not moved for ``stall_s``
while the topic holds later events; the worker then exits so that its supervisor restarts it
(the restarted worker resumes from the committed offsets: at-least-once, nothing lost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
            self._consumer = make_consumer(self.settings, group_id=self.settings.app_id)
        c = self._consumer
        ends = {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=3)[1]
                for p in partitions}
        committed = {tp.partition: tp.offset for tp in
                     c.committed([TopicPartition(self.topic, p) for p in partitions], timeout=3)}
        return ends, committed
