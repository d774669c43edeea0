"""Writes from the API to Kafka, waiting for the broker's acknowledgement.

A 2xx answer from the API means the record is in the topic: ``send`` produces through the
shared factory (linger.ms >= 5, murmur2) and polls until the delivery report arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError

from instore import topics as t
from instore.errors import InstoreError
from instore.kafka import make_producer, produce
from instore.records import Record
from instore.settings import Settings

log = logging.getLogger(__name__)


class PublishError(InstoreError, RuntimeError):
    """The broker did not acknowledge a record in time (the API answers 503)."""


class Publisher:
    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self._producer = make_producer(settings, **{"message.timeout.ms": int(timeout_s * 1000)})
        self._timeout_s = timeout_s
        self.sent: dict[str, int] = {}

    def send(self, topic: t.Topic, record: Record | None, key: str | None = None,
             timestamp_ms: int | None = None) -> None:
        """Produce one record (or a tombstone) and wait for its acknowledgement."""
        self.send_many(topic, [(record, key)], timestamp_ms=timestamp_ms)

    def send_many(self, topic: t.Topic, items: list[tuple[Record | None, str | None]],
                  timestamp_ms: int | None = None) -> None:
        if not items:
            return
        done = threading.Event()
        state: dict[str, Any] = {"pending": len(items), "errors": []}
        lock = threading.Lock()

        def _cb(err: KafkaError | None, _msg: Any) -> None:
            with lock:
                state["pending"] -= 1
                if err is not None:
                    state["errors"].append(str(err))
                if state["pending"] == 0:
                    done.set()

        for record, key in items:
            produce(self._producer, topic, record, key=key, timestamp_ms=timestamp_ms,
                    on_delivery=_cb)
        deadline = time.monotonic() + self._timeout_s + 2
        while not done.is_set():
            if time.monotonic() > deadline:
                msg = f"no acknowledgement from the broker for {topic.name}"
                raise PublishError(msg)
            self._producer.poll(0.02)
        if state["errors"]:
            log.warning("publish to %s failed: %s", topic.name, state["errors"][0])
            msg = f"the broker refused the write to {topic.name}: {state['errors'][0]}"
            raise PublishError(msg)
        self.sent[topic.name] = self.sent.get(topic.name, 0) + len(items)

    def close(self) -> None:
        remaining = self._producer.flush(5)
        if remaining:
            log.warning("publisher closed with %d records unacknowledged", remaining)
        self._producer = _Closed()  # type: ignore[assignment]  # drop the client now


class _Closed:
    """Stands in for the producer after ``close``: any use is a clear error."""

    def __getattr__(self, name: str) -> Any:
        msg = "the publisher is closed"
        raise PublishError(msg)
