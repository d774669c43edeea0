"""The worker's producer: confluent-kafka (librdkafka) driven from the asyncio loop, without a
stop per batch.

Faust's own producer (aiokafka) costs tens of microseconds per message in Python; the
proximity agent writes many NEARBY rows per position, so it produces with librdkafka.

At-least-once without waiting: an agent sends a batch's outputs and goes on with the next batch;
the batch is *sealed* with what it holds (its input events) and released once the broker has
acknowledged all of its outputs. Only the messages that close a run are *marked* with a delivery
callback (the last row of a position, every offer, every dead letter): librdkafka delivers a
partition's messages in order, and with ``enable.gapless.guarantee`` and no message timeout a
message that fails leaves no later message of its partition delivered (the producer stops with
a fatal error instead), so an acknowledged mark vouches for every message of its partition
sent before it. Unmarked messages cost no Python call at all. A batch whose outputs failed
raises :class:`DeliveryFailed` when released; its events are never acknowledged, so they are
read again after the restart (effects are idempotent by key and ``offer_id``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from confluent_kafka import KafkaError

from instore.errors import InstoreError
from instore.kafka import make_producer
from instore.settings import Settings

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 120.0


class DeliveryFailed(InstoreError, RuntimeError):
    pass


class Batch:
    """The outputs of one input batch: complete when every marked message is acknowledged."""

    __slots__ = ("acked", "error", "held", "marked")

    def __init__(self) -> None:
        self.marked = 0
        self.acked = 0
        self.error: str | None = None
        self.held: Any = None

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:  # the poller thread
        if err is not None and self.error is None:
            self.error = f"delivery to {msg.topic()} failed: {err}"
        self.acked += 1  # only this thread writes it

    @property
    def complete(self) -> bool:
        return self.acked >= self.marked


class Output:
    """One librdkafka producer and the batches whose outputs are still in flight."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.sent = 0
        self._fatal: str | None = None
        self._producer = make_producer(settings, **{
            "client.id": f"instore-{name}",
            "linger.ms": settings.worker_output_linger_ms,
            # A failed message must not leave a later one of its partition delivered (see the
            # module docstring): no gaps, and no message given up on while the broker is away.
            "enable.gapless.guarantee": True,
            "message.timeout.ms": 0,
            "error_cb": self._on_error,
        })
        self._batch = Batch()
        self._in_flight: deque[Batch] = deque()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"delivery-{name}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def _on_error(self, err: KafkaError) -> None:  # the poller thread
        if err.fatal():
            self._fatal = f"producer stopped: {err.str()}"
            log.error("%s: %s", self.name, self._fatal)

    # produce() is called positionally: (topic, value, key, partition, callback, on_delivery
    # (an alias of callback), timestamp); partition -1 lets the murmur2 partitioner choose.
    # Keyword arguments cost about a third more per row.

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, ts_ms: int | None,
                 on_delivery: Any, partition: int = -1) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery, None, ts_ms or 0)
                return
            except BufferError:  # queue full: let librdkafka catch up
                self._closed.wait(0.005)

    def send(self, topic: str, key: bytes | None, value: bytes | None, ts_ms: int | None,
             partition: int = -1) -> None:
        """Send one message, marked: it belongs to the current batch (no ``ts_ms``: now;
        ``partition`` -1: the partitioner's choice, murmur2 of the key)."""
        batch = self._batch
        batch.marked += 1
        self._produce(topic, key, value, ts_ms, batch.on_delivery, partition)
        self.sent += 1

    def send_rows(self, topic: str, key: bytes, hits: list[Any], ts_ms: int) -> None:
        """Send ``hit[4]`` of every hit (the worker's NEARBY rows of one position) under one
        key, in order; only the last one is marked (same key, same partition)."""
        if not hits:
            return
        produce = self._producer.produce
        for hit in hits[:-1]:
            while True:
                try:
                    produce(topic, hit[4], key, -1, None, None, ts_ms)
                    break
                except BufferError:  # queue full: let librdkafka catch up
                    self._closed.wait(0.005)
        batch = self._batch
        batch.marked += 1
        self._produce(topic, key, hits[-1][4], ts_ms, batch.on_delivery)
        self.sent += len(hits)

    def seal(self, held: Any) -> None:
        """Close the current batch: ``held`` (its input events) comes back from
        :meth:`released` once every output sent since the last seal is acknowledged."""
        batch, self._batch = self._batch, Batch()
        batch.held = held
        self._in_flight.append(batch)

    @property
    def in_flight(self) -> int:
        """Sealed batches not yet released."""
        return len(self._in_flight)

    def released(self) -> list[Any]:
        """What the complete batches hold, oldest first (a batch stays until it and every
        batch before it are complete, so their events are acknowledged in order).

        Raises DeliveryFailed if an output failed or the producer stopped: nothing from that
        batch on is released."""
        out = []
        while self._in_flight and self._in_flight[0].complete:
            batch = self._in_flight[0]
            if batch.error is not None:
                msg = f"{self.name}: {batch.error}"
                raise DeliveryFailed(msg)
            out.append(self._in_flight.popleft().held)
        self._raise_if_stopped()
        return out

    def _raise_if_stopped(self) -> None:
        if self._fatal is not None:
            msg = f"{self.name}: {self._fatal}"
            raise DeliveryFailed(msg)

    async def room(self, max_in_flight: int) -> None:
        """Wait while more than ``max_in_flight`` batches are in flight (backpressure: the
        agent gets ahead of the broker by that much at most)."""
        pause = 0.0005
        while len(self._in_flight) > max_in_flight and not self._in_flight[0].complete:
            self._raise_if_stopped()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.005)

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> list[Any]:
        """Seal what was sent, wait until every batch is acknowledged and return what they
        hold; raise DeliveryFailed if anything failed or the broker did not answer in time."""
        if self._batch.marked:
            self.seal(None)
        deadline = time.monotonic() + timeout_s
        pause = 0.0005
        held: list[Any] = []
        while True:
            held.extend(self.released())
            if not self._in_flight:
                return held
            if time.monotonic() > deadline:
                msg = (f"{self.name}: {len(self._producer)} messages not acknowledged in "
                       f"{timeout_s:.0f} s")
                raise DeliveryFailed(msg)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.005)

    def close(self) -> None:
        self._producer.flush(10)
        self._closed.set()
