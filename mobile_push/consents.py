"""The push sink's view of consents: which channels each shopper allows, read by a reader of its
own (no group, nothing committed) from the start of the compacted `shopper_consents`, applied
in order and kept in memory, so a Redis that lost its data does not lose the view (Redis gets a
copy, ``serving.consent_channels``, for operators and tests).

No consent seen, no push: the sink reads the table to its end before any offer is pushed, and
again to the end of the moment when an offer names a shopper it has no consent for. An
erasure's tombstone deletes the entry and marks the shopper erased (a keyed hash of the uid,
kept for the stream retention), so offers still in flight for them are not pushed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from instore import serving
from instore import topics as t
from instore.kafka import is_record, make_consumer
from instore.records import RecordError, ShopperConsent, decode
from instore.settings import Settings
from mobile_push.backoff import Backoff

log = logging.getLogger(__name__)

# (source topic, reason, raw value, partition, offset) -> a record on `dead_letters`
DeadLetter = Callable[[str, str, Any, int | None, int | None], None]


class ConsentReader:
    """``view``: uid -> the channels consented (empty: opted out); a uid not in it has no
    consent the sink has seen."""

    def __init__(self, settings: Settings, redis: Any, backoff: Backoff, dead: DeadLetter) -> None:
        self.settings = settings
        self.redis = redis
        self.backoff = backoff
        self.dead = dead
        self.view: dict[str, frozenset[str]] = {}
        self._pos: dict[int, int] = {}  # next consent offset applied, per partition
        self._consumer: Consumer | None = None

    async def start(self, timeout: float) -> bool:
        """Assign every partition from the start and read them to their ends (``catch_up``)."""
        self._consumer = make_consumer(self.settings, None, **{"enable.auto.commit": False})
        await asyncio.to_thread(self._assign)
        return await self.catch_up(timeout)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            msg = "the consent reader is not started"
            raise RuntimeError(msg)
        return self._consumer

    def _assign(self) -> None:
        md = self.consumer.list_topics(t.SHOPPER_CONSENTS.name, timeout=10)
        parts = md.topics[t.SHOPPER_CONSENTS.name].partitions
        self.consumer.assign(
            [TopicPartition(t.SHOPPER_CONSENTS.name, p, OFFSET_BEGINNING) for p in parts]
        )

    def _ends(self) -> dict[int, int]:
        """The end of each consent partition now (fresh from the broker)."""
        ends = {}
        for tp in self.consumer.assignment():
            _lo, hi = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            ends[tp.partition] = hi
        return ends

    async def apply(self, timeout: float) -> int:
        """Apply the consent records fetched so far (waiting up to ``timeout`` for one)."""
        msgs = await asyncio.to_thread(self.consumer.consume, 1000, timeout)
        for m in msgs:
            if is_record(m):
                await self._apply(m)
                partition, offset = m.partition(), m.offset()
                assert partition is not None and offset is not None  # a consumed record
                self._pos[partition] = offset + 1
        return len(msgs)

    async def catch_up(self, timeout: float) -> bool:
        """Apply every consent written until now: True once the reader reached the ends."""
        deadline = time.monotonic() + timeout
        try:
            ends = await asyncio.to_thread(self._ends)
        except KafkaException as exc:
            log.warning("consent catch-up: no watermarks (%s)", exc)
            return False
        while any(self._pos.get(p, 0) < hi for p, hi in ends.items()):
            if time.monotonic() > deadline:
                log.warning("consent catch-up: not at the end after %.0f s", timeout)
                return False
            await self.apply(0.2)
        return True

    async def _apply(self, m: Message) -> None:
        """Keep the channels a shopper allows; a tombstone forgets the shopper."""
        key = m.key()
        if m.value() is None:
            if key:
                await self._forget(key.decode(errors="replace"))
            return
        try:
            consent = decode(ShopperConsent, m.value())
        except RecordError as exc:
            self.dead(str(m.topic()), exc.reason, m.value(), m.partition(), m.offset())
            return
        value = ",".join(sorted(consent.channels)) if consent.opted_in else ""
        self.view[consent.uid] = frozenset(consent.channels) if consent.opted_in else frozenset()

        async def remember() -> None:
            await self.redis.set(serving.consent_channels(consent.uid), value)

        await self.backoff.redis("redis consent", remember)

    async def _forget(self, uid: str) -> None:
        """Erasure: no view entry, no Redis copy, and the erased marker for the retention."""
        erased = serving.erased(serving.pseudonym(self.settings.shopper_secret, uid))
        keep_s = max(1, self.settings.stream_retention_ms // 1000)
        self.view.pop(uid, None)

        async def forget() -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(serving.consent_channels(uid))
            pipe.set(erased, 1, ex=keep_s)
            await pipe.execute()

        await self.backoff.redis("redis consent", forget)
