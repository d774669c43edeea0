"""What `instore bench soak` listens to, to reconcile at the end: a subscriber on every
shopper's channel of the local hub (what was received) and a tail of `offers` (what the policy
produced). The canary shopper's channel carries the fault probes' offers: they are kept apart,
never counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from bench.channels import ChannelTasks
from instore import topics as t
from instore.kafka import make_consumer
from instore.settings import Settings
from mobile_push.local_hub.sse_client import stream_events

CANARY = "canary-00001"


class Subscribers(ChannelTasks):
    """SSE subscribers on every shopper channel of the hub, in one asyncio thread; they
    reconnect if a stream drops. Records every (offer_id, channel uid) received."""

    def __init__(self, base: str, uids: list[str], token: str) -> None:
        self.base, self.uids, self.token = base, uids, token
        self.received: Counter[tuple[str, str]] = Counter()
        self.canary: dict[str, float] = {}
        self.attached: set[str] = set()
        self.reconnects = 0
        super().__init__(uids, "soak-subscribers")

    async def subscribe(self, client: httpx.AsyncClient, uid: str) -> None:
        url = f"{self.base}/channels/shopper:{uid}/stream"
        last_id: str | None = None
        while True:
            try:
                async for ev in stream_events(client, url, self.token, last_id):
                    if ev.event == "attached":
                        self.attached.add(uid)
                    elif ev.event == "message":
                        self._message(uid, json.loads(ev.data))
                        last_id = ev.id or last_id
            except (httpx.HTTPError, OSError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.5)

    def _message(self, uid: str, msg: dict[str, Any]) -> None:
        offer_id = str(msg.get("id"))
        if uid == CANARY:
            self.canary.setdefault(offer_id, time.monotonic())
            return
        self.received[(offer_id, uid)] += 1


class OffersTail:
    """Every offer written to `offers` (the policy's output), across broker restarts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.produced: dict[str, str] = {}
        self.last_new = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-offers")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        consumer = make_consumer(self.settings, None,
                                 **{"topic.metadata.refresh.interval.ms": 2000})
        parts = t.partitions_of(t.OFFERS, self.settings.kafka_partitions)
        consumer.assign([TopicPartition(t.OFFERS.name, p, OFFSET_BEGINNING) for p in range(parts)])
        next_offset = dict.fromkeys(range(parts), 0)
        next_check = time.monotonic() + 2
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(2000, 0.2):
                    if msg.error() is not None:
                        continue
                    partition, offset = msg.partition(), msg.offset()
                    assert partition is not None and offset is not None  # a consumed record
                    next_offset[partition] = offset + 1
                    value = msg.value()
                    if not value:
                        continue
                    with contextlib.suppress(ValueError):
                        offer = orjson.loads(value)
                        if offer["uid"] != CANARY and offer["offer_id"] not in self.produced:
                            self.produced[offer["offer_id"]] = offer["uid"]
                            self.last_new = time.monotonic()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 2
                    self._follow_recreated(consumer, next_offset)
        finally:
            consumer.close()

    @staticmethod
    def _follow_recreated(consumer: Any, next_offset: dict[int, int]) -> None:
        """After a broker restart the topic starts again at offset 0: read it from there."""
        for p, want in list(next_offset.items()):
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(t.OFFERS.name, p),
                                                            timeout=2, cached=False)
            except KafkaException:
                continue
            if high < want:  # re-read everything: offers are counted once per offer_id
                consumer.assign([TopicPartition(t.OFFERS.name, q, OFFSET_BEGINNING)
                                 for q in next_offset])
                for q in next_offset:
                    next_offset[q] = 0
                return
