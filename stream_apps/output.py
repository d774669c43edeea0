"""The worker's producer: confluent-kafka (librdkafka) driven from the asyncio loop.

Faust's own producer (aiokafka) costs tens of microseconds per message in Python; the
proximity agent writes many NEARBY rows per position, so it produces with librdkafka and, at
the end of each batch, waits (in a thread) until every message of the batch is acknowledged.
Only then are the batch's input events acknowledged to Faust, so committed offsets never run
ahead of the outputs (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError

from instore.kafka import make_producer
from instore.settings import Settings

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    pass


class Output:
    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.failed = 0
        self._seen_failed = 0
        self.sent = 0
        self._producer = make_producer(settings, **{"on_delivery": self._on_delivery,
                                                   "delivery.report.only.error": True,
                                                   "client.id": f"instore-{name}"})
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"flush-{name}")

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed += 1
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
            except BufferError:
                self._producer.poll(0.01)
        self.sent += 1

    async def drain(self) -> None:
        """Wait until everything sent so far is acknowledged; raise if anything failed."""
        loop = asyncio.get_running_loop()
        remaining = await loop.run_in_executor(self._executor, self._producer.flush, 60.0)
        if remaining:
            msg = f"{self.name}: {remaining} messages not acknowledged within 60 s"
            raise DeliveryFailed(msg)
        if self.failed > self._seen_failed:
            n = self.failed - self._seen_failed
            self._seen_failed = self.failed
            msg = f"{self.name}: {n} messages failed delivery"
            raise DeliveryFailed(msg)

    def close(self) -> None:
        self._producer.flush(10)
        self._executor.shutdown(wait=False)
