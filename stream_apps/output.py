"""The worker's producer: confluent-kafka (librdkafka) driven from the asyncio loop.

Faust's own producer (aiokafka) costs tens of microseconds per message in Python; the
proximity agent writes many NEARBY rows per position, so it produces with librdkafka.
``drain()`` waits until librdkafka's queue is empty, i.e. the broker has acknowledged every
message sent so far (each agent has its own Output and waits before it sends more). It polls the
queue length instead of calling ``flush()``: a flush overrides ``linger.ms`` and sends tiny
batches, which the embedded broker handles badly. Delivery reports come only for failures, so
successful messages cost no Python call; a poller thread serves those reports.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError

from instore.kafka import make_producer
from instore.settings import Settings

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 120.0


class DeliveryFailed(RuntimeError):
    pass


class Output:
    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.sent = 0
        self.failed = 0
        self._seen_failed = 0
        self._first_error: str | None = None
        self._producer = make_producer(settings, **{
            "client.id": f"instore-{name}", "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
            "linger.ms": settings.worker_output_linger_ms,
        })
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"delivery-{name}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:  # poller thread
        if err is not None:
            self.failed += 1
            if self._first_error is None:
                self._first_error = f"delivery to {msg.topic()} failed: {err}"
            if self.failed - self._seen_failed <= 3:
                log.error("%s: delivery to %s failed: %s", self.name, msg.topic(), err)

    def send(self, topic: str, key: bytes | None, value: bytes | None, ts_ms: int | None) -> None:
        produce = self._producer.produce
        while True:
            try:
                if ts_ms is None:
                    produce(topic, value, key)
                else:
                    produce(topic, value, key, timestamp=ts_ms)
                break
            except BufferError:  # queue full: let librdkafka catch up
                self._closed.wait(0.005)
        self.sent += 1

    def send_rows(self, topic: str, key: bytes, hits: list[Any], ts_ms: int) -> None:
        """Send ``hit[4]`` of every hit (the worker's NEARBY rows of one position) under one
        key, in order: one Python call per position instead of one per row."""
        produce = self._producer.produce
        for hit in hits:
            while True:
                try:
                    produce(topic, hit[4], key, timestamp=ts_ms)
                    break
                except BufferError:  # queue full: let librdkafka catch up
                    self._closed.wait(0.005)
        self.sent += len(hits)

    async def drain(self) -> None:
        """Wait until everything sent so far is acknowledged; raise if anything failed."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        pause = 0.0005
        while len(self._producer) > 0:
            if time.monotonic() > deadline:
                msg = (f"{self.name}: {len(self._producer)} messages not acknowledged in "
                       f"{DRAIN_TIMEOUT_S:.0f} s")
                raise DeliveryFailed(msg)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.005)
        if self.failed > self._seen_failed:
            n, self._seen_failed = self.failed - self._seen_failed, self.failed
            msg = f"{self.name}: {n} messages failed ({self._first_error})"
            self._first_error = None
            raise DeliveryFailed(msg)

    def close(self) -> None:
        self._producer.flush(10)
        self._closed.set()
