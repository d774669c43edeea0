"""Replicated views of the compacted topics (catalog, promotions, consents).

Every worker needs the whole catalog and every promotion and consent, whichever position
partitions it owns, so each worker reads these compacted topics in full (the topic is the
changelog, as Kafka Streams does for source-topic tables) with static assignment, and keeps
the proximity index current on every change. ``ready`` is set once the view has caught up
with the end offsets seen at start, so no position is judged against a half-loaded catalog.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from instore import topics as t
from instore.kafka import aiokafka_config
from instore.proximity import ProximityState
from instore.records import RecordError, ShopperConsent, decode
from instore.settings import Settings

log = logging.getLogger(__name__)

DeadLetterFn = Callable[[str, str, bytes | None, int, int], Awaitable[None]]


class Views:
    def __init__(self, settings: Settings, dead_letter: DeadLetterFn) -> None:
        self.settings = settings
        self.proximity = ProximityState(settings.geofence_margin_m)
        self.consents: dict[str, ShopperConsent] = {}
        self.ready = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self._dead_letter = dead_letter
        self._topics = (t.STORES_PRODUCTS.name, t.PRODUCTS_PROMOTIONS.name, t.SHOPPER_CONSENTS.name)

    async def run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                **aiokafka_config(self.settings), group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", max_poll_records=5000,
                fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
            )
            try:
                await consumer.start()
                await self._follow(consumer)
            except KafkaError as exc:
                log.warning("views: broker error, reconnecting: %s", type(exc).__name__)
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps = []
        for name in self._topics:
            for _ in range(100):
                parts = consumer.partitions_for_topic(name)
                if parts:
                    break
                await consumer._client.force_metadata_update()  # noqa: SLF001
                await asyncio.sleep(0.1)
            else:
                msg = f"topic {name} does not exist: run `instore up` (it creates the topics)"
                raise RuntimeError(msg)
            tps += [TopicPartition(name, p) for p in sorted(parts)]
        return tps

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        tps = await self._partitions(consumer)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp, off in end.items() if off > 0}
        if not pending:
            self._mark_ready()
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batch.items():
                for msg in msgs:
                    await self.apply(tp.topic, msg.key, msg.value, tp.partition, msg.offset)
                if tp in pending and msgs and msgs[-1].offset + 1 >= end[tp]:
                    pending.discard(tp)
            if pending:
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
                if not pending:
                    self._mark_ready()
            elif not self.ready.is_set():
                self._mark_ready()

    def _mark_ready(self) -> None:
        log.info("views ready: %d stores, %d promotions, %d consents",
                 len(self.proximity.stores), len(self.proximity.promotions), len(self.consents))
        self.ready.set()

    async def apply(self, topic: str, key: bytes | None, value: bytes | None,
                    partition: int, offset: int) -> None:
        """One record of a compacted topic: upsert, or delete on a tombstone."""
        try:
            self._apply(topic, key, value)
            self.counts[topic] += 1
        except RecordError as exc:
            self.counts["invalid"] += 1
            await self._dead_letter(topic, exc.reason, value, partition, offset)

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if topic != t.SHOPPER_CONSENTS.name:
            self.proximity.apply(topic, key, value)
            return
        k = key.decode("utf-8", errors="replace") if key is not None else None
        if value is None:
            if k is not None:
                self.consents.pop(k, None)
        else:
            consent = decode(ShopperConsent, value)
            self.consents[consent.uid] = consent
