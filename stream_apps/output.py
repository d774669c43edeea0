"""The worker's producer: confluent-kafka (librdkafka) driven from the asyncio loop.

Faust's own producer (aiokafka) costs tens of microseconds per message in Python; the
proximity agent writes many NEARBY rows per position, so it produces with librdkafka. Sends
are grouped in batches: ``seal()`` closes the current batch and returns a future that resolves
when the broker has acknowledged every message of it (or fails if one failed). A poller thread
serves librdkafka's delivery reports, so the loop never blocks on the broker and producing
never forces tiny batches (a ``flush()`` per batch would: it overrides ``linger.ms``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import KafkaError

from instore.kafka import make_producer
from instore.settings import Settings

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    pass


class _Batch:
    __slots__ = ("delivered", "error", "future", "loop", "sealed", "sent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.sent = 0
        self.delivered = 0
        self.sealed = False
        self.error: str | None = None

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:  # librdkafka's thread
        if err is not None and self.error is None:
            self.error = f"delivery to {msg.topic()} failed: {err}"
        self.delivered += 1
        if self.sealed and self.delivered == self.sent:
            self.loop.call_soon_threadsafe(self._resolve)

    def seal(self) -> None:
        self.sealed = True
        if self.delivered == self.sent:
            self._resolve()

    def _resolve(self) -> None:
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(DeliveryFailed(self.error))
        else:
            self.future.set_result(None)


class Output:
    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.sent = 0
        self._producer = make_producer(settings, **{"client.id": f"instore-{name}"})
        self._batch: _Batch | None = None
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"delivery-{name}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def send(self, topic: str, key: bytes | None, value: bytes | None, ts_ms: int | None) -> None:
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(asyncio.get_running_loop())
        cb = batch.on_delivery
        produce = self._producer.produce
        while True:
            try:
                if ts_ms is None:
                    produce(topic, value, key, on_delivery=cb)
                else:
                    produce(topic, value, key, on_delivery=cb, timestamp=ts_ms)
                break
            except BufferError:  # queue full: let the poller catch up
                self._closed.wait(0.005)
        batch.sent += 1
        self.sent += 1

    def seal(self) -> asyncio.Future[None]:
        """Close the current batch; the future resolves once all of it is acknowledged."""
        batch, self._batch = self._batch, None
        if batch is None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        batch.seal()
        return batch.future

    async def drain(self) -> None:
        """Wait until everything sent so far is acknowledged; raise if anything failed."""
        await self.seal()

    def close(self) -> None:
        self._producer.flush(10)
        self._closed.set()
