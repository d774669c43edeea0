"""A fetch wait that grows while the broker answers "nothing" for partitions that have records.

The embedded broker (Tansu 0.6, memory engine) reads a fetch's record batches until the
request's ``max_wait_ms`` is spent and then answers with what it has read: possibly nothing,
even when the partition holds records after the fetch offset. Deep in a large backlog, finding
and reading the first batch can take longer than the short wait our consumers use for low
latency (20 ms), so every fetch came back empty and the consumer never moved again: the worker
"stall" of the 10-minute soak (a worker, and every worker restarted after it, idle at its
committed offsets while ~100,000 positions waited). The same request with a 500 ms wait
returns data.

Why (from Tansu's source): each fetch below the high watermark lists every stored batch of the
partition to find its offset, then reads batches until ``max_wait_ms`` is spent; a listing
cut off by the deadline finds nothing at a deep offset. A consumer at the end skips the
listing but is answered only when the wait is over (so the wait there is pure latency).

``AdaptiveFetchWait`` watches an aiokafka consumer's fetch responses and sets the wait of the
next fetch: ``base_ms`` (short) when the consumer is within ``near_lag`` records of the end;
``behind_ms`` while it is further behind (the broker answers as soon as a pass found data, so
the longer deadline costs no latency and lets one listing serve many batches); and twice the
last wait (up to ``max_ms``) when a fetch returned no record for a partition whose records
were already there when it was sent. On a broker that answers as soon as data is there
(Apache Kafka, Confluent Cloud) the same rules only change a deadline that is never reached.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


class AdaptiveFetchWait:
    def __init__(self, fetcher: Any, base_ms: int, max_ms: int = 4000, behind_ms: int = 1000,
                 near_lag: int = 2000, name: str = "consumer") -> None:
        self.fetcher = fetcher
        self.base_ms = base_ms
        self.max_ms = max(max_ms, base_ms)
        self.behind_ms = min(max(behind_ms, base_ms), self.max_ms)
        self.near_lag = near_lag
        self.name = name
        self.raised = 0  # how many times the wait was raised (for tests and logs)
        self._original = fetcher._proc_fetch_request  # noqa: SLF001
        fetcher._fetch_max_wait_ms = base_ms  # noqa: SLF001
        fetcher._proc_fetch_request = self._proc_fetch_request  # noqa: SLF001

    @property
    def wait_ms(self) -> int:
        return int(self.fetcher._fetch_max_wait_ms)  # noqa: SLF001

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> Any:
        # The high watermark known *before* the fetch: records at or past the fetch offset
        # were already there when we asked (records that arrive during the wait do not count:
        # this broker answers a wait that found nothing at its start with nothing).
        before = []
        for topic, partitions in request.topics:
            for partition, offset, _max_bytes in partitions:
                tp = TopicPartition(topic, partition)
                try:
                    state = assignment.state_value(tp)
                except (KeyError, AttributeError):
                    continue
                before.append((tp, state, offset, state.highwater))
        result = await self._original(assignment, node_id, request)
        try:
            self.observe(assignment, before)
        except Exception:  # noqa: BLE001 - never break the fetch loop over bookkeeping
            log.debug("%s: fetch wait bookkeeping failed", self.name, exc_info=True)
        return result

    def observe(self, assignment: Any,
                fetched: list[tuple[Any, Any, int, int | None]]) -> None:
        """``fetched``: (partition, its state, fetch offset, high watermark known before the
        fetch)."""
        if not assignment.active:
            return
        starved = False
        lag = 0
        records = self.fetcher._records  # noqa: SLF001
        for tp, state, offset, highwater_before in fetched:
            if not state.has_valid_position:
                continue
            if (tp not in records and state.position == offset
                    and highwater_before is not None and highwater_before > offset):
                starved = True  # records were there before we asked, and none came back
            if state.highwater is not None:
                lag = max(lag, state.highwater - state.position)
        current = self.wait_ms
        if starved and current < self.max_ms:
            floor = self.behind_ms if lag > self.near_lag else 50
            new = min(self.max_ms, max(current * 2, floor))
            self.fetcher._fetch_max_wait_ms = new  # noqa: SLF001
            self.raised += 1
            log.log(logging.INFO if new >= 400 else logging.DEBUG,  # noqa: PLR2004
                    "%s: the broker answered a fetch with no records while %d waited: fetch "
                    "wait %d -> %d ms", self.name, lag, current, new)
        elif not starved and lag > self.near_lag and current < self.behind_ms:
            self.fetcher._fetch_max_wait_ms = self.behind_ms  # noqa: SLF001
            log.debug("%s: %d records behind: fetch wait %d -> %d ms", self.name, lag, current,
                      self.behind_ms)
        elif not starved and current != self.base_ms and lag <= self.near_lag:
            self.fetcher._fetch_max_wait_ms = self.base_ms  # noqa: SLF001
            log.debug("%s: caught up (lag %d): fetch wait back to %d ms", self.name, lag,
                      self.base_ms)
