"""Positions to ``customers_locations`` through broker outages, with a bounded buffer.

Records wait in an in-process deque (bounded: when full the OLDEST is dropped and counted) and
are handed to the confluent-kafka producer only while fewer than ``max_in_flight`` are
unacknowledged, so an outage fills our bounded buffer rather than librdkafka's unbounded one.
A failed delivery (e.g. the message timed out while the broker was down) goes back to the
front of the buffer. Delivery is at-least-once; a redelivered position has the same
(uid, ts), so consumers treat it idempotently. ``close`` flushes what is left.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from instore import topics as t
from instore.kafka import make_producer
from instore.records import CustomerLocation
from instore.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    offered: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    requeued: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class LocationSink:
    """Bounded, outage-tolerant producer of ``CustomerLocation`` records."""

    def __init__(self, settings: Settings, *, max_buffer: int = 10_000, max_in_flight: int = 1_000,
                 message_timeout_ms: int = 10_000, producer: Any = None) -> None:
        self.topic = t.CUSTOMERS_LOCATIONS
        self.max_buffer = max_buffer
        self.max_in_flight = max_in_flight
        self.stats = SinkStats()
        self._buffer: deque[tuple[bytes, bytes, int]] = deque()
        self._in_flight = 0
        self._producer = producer or make_producer(
            settings, **{"message.timeout.ms": message_timeout_ms,
                         "queue.buffering.max.messages": max(max_in_flight * 2, 1000)})
        self._warned_drop = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _append(self, item: tuple[bytes, bytes, int], front: bool = False) -> None:
        if len(self._buffer) >= self.max_buffer:
            if front:  # the failed one is older than anything buffered: it is the one to drop
                self.stats.dropped += 1
                return
            self._buffer.popleft()
            self.stats.dropped += 1
            if not self._warned_drop:
                log.warning("edge buffer full (%d): dropping oldest positions", self.max_buffer)
                self._warned_drop = True
        if front:
            self._buffer.appendleft(item)
        else:
            self._buffer.append(item)

    def offer(self, record: CustomerLocation) -> None:
        key = self.topic.key_of(record) or record.uid
        self.stats.offered += 1
        self._append((key.encode(), record.to_json(), int(record.ts or 0)))

    def _on_delivery(self, item: tuple[bytes, bytes, int]) -> Any:
        def _cb(err: KafkaError | None, _msg: Any) -> None:
            self._in_flight -= 1
            if err is None:
                self.stats.delivered += 1
                return
            self.stats.failed_attempts += 1
            if self.stats.failed_attempts == 1 or self.stats.failed_attempts % 1000 == 0:
                log.warning("edge position delivery failed (%s); kept for retry", err.name())
            self.stats.requeued += 1
            self._append(item, front=True)

        return _cb

    def pump(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and hand buffered records to the producer while there is room."""
        self._producer.poll(timeout)
        while self._buffer and self._in_flight < self.max_in_flight:
            item = self._buffer.popleft()
            key, value, ts = item
            try:
                self._producer.produce(self.topic.name, key=key, value=value,
                                       timestamp=ts or 0, on_delivery=self._on_delivery(item))
            except BufferError:
                self._buffer.appendleft(item)
                break
            except KafkaException as exc:
                log.warning("edge produce refused: %s", exc)
                self._buffer.appendleft(item)
                break
            self._in_flight += 1
        self._producer.poll(0)

    def close(self, timeout_s: float = 10.0) -> SinkStats:
        """Flush: keep pumping until everything is delivered or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while (self._buffer or self._in_flight) and time.monotonic() < deadline:
            self.pump(0.05)
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        self.pump(0)
        left = len(self._buffer) + self._in_flight
        if left:
            log.warning("edge sink closed with %d positions undelivered", left)
        log.info("edge sink closed: %s", self.stats.as_dict())
        return self.stats
