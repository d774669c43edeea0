"""The archiver: the streams (and the catalog's and promotions' changes) from Kafka to Parquet,
by date and store, exactly once per offset (``writer.py``), with shoppers pseudonymized
(``instore/archive.py``) and data-quality counts on the way (``rows.Quality``).

One consumer group (``ARCHIVER_GROUP``); each partition's buffer is written as one file set
when it holds ARCHIVE_FLUSH_RECORDS records or its oldest waited ARCHIVE_FLUSH_S, when the
partition is revoked, and on shutdown. Where to resume comes from the archive's manifests.
A broker restart is librdkafka's to ride out; a Redis or filesystem failure keeps the buffer
and retries (tenacity) without advancing.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, wait_exponential

from instore import archive as a
from instore import groups, quality, serving
from instore.errors import InstoreError
from instore.kafka import ensure_topics, make_consumer, wait_for_broker
from instore.settings import Settings
from stream_apps.archive import rows as rw
from stream_apps.archive.writer import ArchiveWriter, Committed

log = logging.getLogger(__name__)
ARCHIVER_GROUP = groups.ARCHIVER
ARCHIVED_TOPICS = tuple(d.topic for d in a.DATASETS)
KEY_SCRIPT = """
-- KEYS[i]: archive key of uid i; ARGV[1]: erased-marker prefix; ARGV[1+i]: marker suffix i;
-- ARGV[n+2..]: a fresh key per uid (used when the shopper has none and was not erased)
local n = #KEYS
local out = {}
for i = 1, n do
  local key = redis.call('GET', KEYS[i])
  if not key then
    if redis.call('EXISTS', ARGV[1] .. ARGV[1 + i]) == 1 then
      key = false
    else
      redis.call('SET', KEYS[i], ARGV[1 + n + i])
      key = ARGV[1 + n + i]
    end
  end
  out[i] = key
end
return out
"""


ONCE_STALL_S = 60.0


class ArchiveIncomplete(InstoreError, RuntimeError):
    pass


@dataclass
class Buffer:
    messages: list[rw.Message] = field(default_factory=list)
    since: float = 0.0


class Archiver:
    def __init__(self, settings: Settings, location: str | None = None,
                 group_id: str = ARCHIVER_GROUP) -> None:
        import redis  # noqa: PLC0415

        self.settings = settings
        self.location = location or settings.archive_location
        self.writer = ArchiveWriter(self.location)
        self.group_id = group_id
        self.redis = redis.Redis.from_url(settings.redis_address, socket_timeout=5,
                                          socket_connect_timeout=2)
        self.keys_script = self.redis.register_script(KEY_SCRIPT)
        self.quality = rw.Quality(settings.dq_late_ms)
        self.buffers: dict[tuple[str, int], Buffer] = {}
        self.archived_upto: dict[tuple[str, int], int] = {}  # next offset to archive
        self.stats: Counter[str] = Counter()
        self._stop = False
        self._retry = Retrying(
            retry=retry_if_exception_type((OSError, ConnectionError, TimeoutError)) |
            retry_if_exception_type(redis.RedisError),
            wait=wait_exponential(multiplier=0.2, max=5), reraise=True,
            stop=lambda state: self._stop and state.attempt_number > 3,
            before_sleep=before_sleep_log(log, logging.WARNING))

    def stop(self, *_: Any) -> None:
        self._stop = True

    # -- the loop -------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> None:
        """Consume until stopped; with ``once``, until everything the topics held when it
        started is archived (`instore archive --once`)."""
        s = self.settings
        wait_for_broker(s, 60.0)
        ensure_topics(s, ARCHIVED_TOPICS)
        self._retry(self.writer.recover)
        consumer = make_consumer(s, self.group_id, **{
            "fetch.wait.max.ms": 500, "session.timeout.ms": 10_000,
            "max.poll.interval.ms": 600_000, "topic.metadata.refresh.interval.ms": 10_000})
        self.consumer = consumer
        targets = self._ends(consumer) if once else {}
        consumer.subscribe([tp.name for tp in ARCHIVED_TOPICS], on_assign=self._on_assign,
                           on_revoke=self._on_revoke)
        log.info("archiver started: group=%s archive=%s", self.group_id, self.location)
        progress = time.monotonic()
        try:
            while not self._stop:
                msgs = consumer.consume(2000, 0.5)
                if msgs:
                    progress = time.monotonic()
                elif once and time.monotonic() - progress > ONCE_STALL_S:
                    msg = (f"nothing arrived for {ONCE_STALL_S:.0f} s before everything was "
                           f"archived: is another archiver (group {self.group_id}) running?")
                    raise ArchiveIncomplete(msg)
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001
                            log.warning("archiver: consume error: %s", err)
                        continue
                    self._buffer(m)
                self._flush_due(force=False, caught_up=targets)
                if once and all(self.archived_upto.get(k, lo) >= hi
                                for k, (lo, hi) in targets.items()):
                    break
            self._flush_due(force=True)
        finally:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()
            log.info("archiver stopped: %s", dict(self.stats))

    def _buffer(self, m: Any) -> None:
        """Add a consumed record to its partition's buffer."""
        msg = rw.Message(str(m.topic()), int(m.partition()), int(m.offset()),
                         int(m.timestamp()[1]), m.key(), m.value())
        key = (msg.topic, msg.partition)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = Buffer()
        if not buf.messages:
            buf.since = time.monotonic()
        buf.messages.append(msg)

    def _ends(self, consumer: Any) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) watermark of every archived partition now."""
        out = {}
        md = consumer.list_topics(timeout=10)
        for topic in ARCHIVED_TOPICS:
            for p in md.topics[topic.name].partitions:
                out[(topic.name, p)] = consumer.get_watermark_offsets(
                    TopicPartition(topic.name, p), timeout=10)
        return out

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            nxt = self._retry(self.writer.next_offset, tp.topic, tp.partition)
            tp.offset = OFFSET_BEGINNING if nxt is None else nxt
            if nxt is not None:
                self.archived_upto[(tp.topic, tp.partition)] = nxt
        consumer.assign(partitions)
        log.info("archiver: assigned %d partition(s)", len(partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._flush((tp.topic, tp.partition))
            self.buffers.pop((tp.topic, tp.partition), None)

    def _flush_due(self, *, force: bool,
                   caught_up: dict[tuple[str, int], tuple[int, int]] | None = None) -> None:
        """Write the buffers that are full or old enough (all with ``force``; with
        ``caught_up``, also those that reached that high watermark)."""
        now = time.monotonic()
        for key, buf in list(self.buffers.items()):
            if not buf.messages:
                continue
            reached = caught_up is not None and key in caught_up and \
                buf.messages[-1].offset + 1 >= caught_up[key][1]
            if (force or reached or len(buf.messages) >= self.settings.archive_flush_records
                    or now - buf.since >= self.settings.archive_flush_s):
                self._flush(key)

    def _flush(self, key: tuple[str, int]) -> Committed | None:
        buf = self.buffers.get(key)
        if buf is None or not buf.messages:
            return None
        messages = buf.messages
        committed = self._retry(self.archive, messages)
        buf.messages = []
        self.archived_upto[key] = committed.last + 1
        with contextlib.suppress(KafkaException):
            self.consumer.commit(offsets=[TopicPartition(key[0], key[1], committed.last + 1)],
                                 asynchronous=True)
        return committed

    # -- one range ------------------------------------------------------------------------------
    def archive(self, messages: list[rw.Message]) -> Committed:
        """Write one partition's consecutive records as a committed file set."""
        first = messages[0]
        dataset = a.BY_TOPIC[first.topic]
        decoding = rw.decode(dataset, messages)
        keys = self.archive_keys(sorted(decoding.uids()))
        groups = rw.rows(dataset, decoding, keys)
        committed = self.writer.commit(first.topic, first.partition, messages[0].offset,
                                       messages[-1].offset, groups)
        self.quality.observe(dataset, messages, decoding)
        self._write_quality()
        self.stats["records"] += committed.records
        self.stats["invalid"] += decoding.invalid
        self.stats["files"] += len(committed.files)
        return committed

    def archive_keys(self, uids: list[str]) -> dict[str, bytes | None]:
        """Each shopper's archive key, made on first sight; None for a shopper erased (the
        erased marker, kept for the stream retention) who has no key any more."""
        out: dict[str, bytes | None] = {}
        secret = self.settings.shopper_secret
        for i in range(0, len(uids), 500):
            chunk = uids[i:i + 500]
            values = self.keys_script(
                keys=[serving.archive_key(u) for u in chunk],
                args=[serving.erased(""), *(serving.pseudonym(secret, u) for u in chunk),
                      *(secrets.token_hex(32) for _ in chunk)])
            for uid, value in zip(chunk, values, strict=True):
                out[uid] = bytes.fromhex(value.decode() if isinstance(value, bytes) else value) \
                    if value else None
        return out

    def _write_quality(self) -> None:
        counts = self.quality.take()
        if not counts:
            return
        pipe = self.redis.pipeline(transaction=False)
        quality.add(pipe, counts)
        try:
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 (metrics must not stop the archive)
            log.warning("archiver: data-quality counts not written: %s", type(exc).__name__)


def run_archiver(settings: Settings, *, once: bool = False) -> dict[str, int]:
    archiver = Archiver(settings)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, archiver.stop)
    archiver.run(once=once)
    return {"records": 0, "files": 0, "invalid": 0} | dict(archiver.stats)
