"""Durable embedded mode: the sources of truth survive the memory-only embedded broker.

The catalog (``stores_products``), promotions (``products_promotions``) and consents
(``shopper_consents``) are compacted topics: the latest value per key is the state. The
persister (``instore persist``, its own process under ``instore up``) follows them from the
beginning and keeps the latest value per key in SQLite under the data directory (a tombstone
deletes the row, so an erasure is durable too). When the broker is empty (the stack starts on a
fresh broker, or the broker restarted and lost its memory) and the store is not, it recreates
the topics and writes every stored record back, so the worker, the sink and the API rebuild
their views from them. Redis runs with append-only persistence in the same directory, so the
sink's ``offer_id`` de-duplication markers survive a restart too.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from instore import topics as t
from instore.settings import Settings

log = logging.getLogger(__name__)

DURABLE_TOPICS: tuple[t.Topic, ...] = (t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS,
                                       t.SHOPPER_CONSENTS)
DB_FILE = "durable.sqlite3"


def default_data_dir() -> Path:
    """The per-user data directory (``~/.local/share/instore`` on Linux)."""
    from platformdirs import user_data_dir  # noqa: PLC0415

    return Path(user_data_dir("instore", appauthor=False))


def resolve_data_dir(settings: Settings, given: Path | None) -> Path:
    """``--data-dir`` if given, else DATA_DIR if set, else the per-user data directory."""
    if given is not None:
        return given
    if "data_dir" in settings.model_fields_set:
        return settings.data_dir
    return default_data_dir()


class DurableStore:
    """Latest value per (topic, key) in SQLite (WAL); safe to use from one thread at a time."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE
        self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS records (topic TEXT NOT NULL, key BLOB NOT NULL, "
            "value BLOB NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (topic, key))")
        self.db.commit()
        self.lock = threading.Lock()

    def apply(self, changes: list[tuple[str, bytes, bytes | None]]) -> None:
        """Upserts and tombstones (value None), in order, in one transaction."""
        now = time.time()
        with self.lock, self.db:
            for topic, key, value in changes:
                if value is None:
                    self.db.execute("DELETE FROM records WHERE topic = ? AND key = ?", (topic, key))
                else:
                    self.db.execute(
                        "INSERT INTO records (topic, key, value, updated_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(topic, key) DO UPDATE SET value = excluded.value, "
                        "updated_at = excluded.updated_at", (topic, key, value, now))

    def records(self, topic: str) -> Iterator[tuple[bytes, bytes]]:
        with self.lock:
            rows = self.db.execute("SELECT key, value FROM records WHERE topic = ? ORDER BY rowid",
                                   (topic,)).fetchall()
        yield from rows

    def counts(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute("SELECT topic, COUNT(*) FROM records GROUP BY topic").fetchall()
        return {name: n for name, n in rows}

    def close(self) -> None:
        self.db.close()


def broker_is_empty(settings: Settings) -> bool:
    """True when none of the durable topics holds a record (or they do not exist)."""
    from instore.kafka import make_consumer  # noqa: PLC0415

    consumer = make_consumer(settings)
    try:
        md = consumer.list_topics(timeout=5)
        for topic in DURABLE_TOPICS:
            meta = md.topics.get(topic.name)
            if meta is None or meta.error is not None:
                continue
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic.name, p),
                                                            timeout=5)
                if high > 0:
                    return False
        return True
    finally:
        consumer.close()


def restore(settings: Settings, store: DurableStore) -> dict[str, int]:
    """Create the contract's topics and write every stored record back; returns counts."""
    from instore.kafka import ensure_topics, make_producer, produce  # noqa: PLC0415

    ensure_topics(settings)
    producer = make_producer(settings)
    counts: dict[str, int] = {}
    failed: dict[str, int] = {}
    for topic in DURABLE_TOPICS:
        n = 0
        for key, value in store.records(topic.name):
            produce(producer, topic, bytes(value), key=bytes(key).decode(),
                    on_delivery=_count_failures(failed))
            n += 1
        counts[topic.name] = n
    left = producer.flush(60)
    if left or failed:
        msg = f"restore incomplete: {left} records not flushed, {failed.get('failed', 0)} failed"
        raise KafkaException(msg)
    return counts


def _count_failures(counter: dict[str, int]):  # type: ignore[no-untyped-def]
    def _cb(err, _msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            counter["failed"] = counter.get("failed", 0) + 1
    return _cb


class Persister:
    """Follows the durable topics into the store; restores them when the broker is empty."""

    def __init__(self, settings: Settings, data_dir: Path, check_every_s: float = 2.0) -> None:
        self.settings = settings
        self.store = DurableStore(data_dir)
        self.check_every_s = check_every_s
        self.stopping = threading.Event()
        self.persisted = 0
        self.restores = 0

    def _consumer(self):  # type: ignore[no-untyped-def]
        from instore.kafka import make_consumer  # noqa: PLC0415

        consumer = make_consumer(self.settings, **{"auto.offset.reset": "earliest",
                                                   "topic.metadata.refresh.interval.ms": 2000})
        md = consumer.list_topics(timeout=10)
        parts = [TopicPartition(topic.name, p, OFFSET_BEGINNING) for topic in DURABLE_TOPICS
                 if topic.name in md.topics for p in md.topics[topic.name].partitions]
        consumer.assign(parts)
        return consumer, len(parts)

    def restore_if_empty(self) -> bool:
        if not any(self.store.counts().values()):
            return False
        if not broker_is_empty(self.settings):
            return False
        counts = restore(self.settings, self.store)
        self.restores += 1
        log.info("durable: broker was empty, restored %s", counts)
        return True

    def run(self) -> None:
        from instore.kafka import ensure_topics, wait_for_broker  # noqa: PLC0415

        wait_for_broker(self.settings, timeout_s=60)
        ensure_topics(self.settings)
        self.restore_if_empty()
        consumer, n_parts = self._consumer()
        log.info("durable persister started: %s (%s partitions, %s)", self.store.path, n_parts,
                 self.store.counts())
        next_check = time.monotonic() + self.check_every_s
        try:
            while not self.stopping.is_set():
                msgs = consumer.consume(5000, 0.2)
                changes = [(m.topic(), m.key() or b"", m.value()) for m in msgs
                           if m.error() is None and m.key() is not None]
                if changes:
                    self.store.apply(changes)
                    self.persisted += len(changes)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.check_every_s
                    try:
                        if self.restore_if_empty():
                            consumer.close()  # the topics are new: read them from the start
                            consumer, n_parts = self._consumer()
                    except KafkaException as exc:
                        log.warning("durable: broker not ready for a restore yet (%s)",
                                    type(exc).__name__)
        finally:
            consumer.close()
            log.info("durable persister stopped: %s records persisted, %s restores",
                     self.persisted, self.restores)
            self.store.close()


def run_persister(settings: Settings, data_dir: Path) -> None:
    """The `instore persist` command: run until SIGTERM/SIGINT."""
    import signal  # noqa: PLC0415

    persister = Persister(settings, data_dir)

    def _stop(_signum: int, _frame: object) -> None:
        persister.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    persister.run()


def faust_changelogs(settings: Settings) -> list[str]:
    from instore.kafka import make_admin  # noqa: PLC0415

    names = make_admin(settings).list_topics(timeout=10).topics
    return sorted(n for n in names if n.startswith(f"{settings.app_id}-")
                  and n.endswith("-changelog"))


class BrokerRestartWatch:
    """What the supervisor does when the embedded broker comes back empty after a restart.

    The broker's memory held the workers' table changelogs too. A worker that outlived the
    broker writes into changelog topics that the broker re-creates on the fly, and on Tansu a
    worker started later waits forever in Faust's recovery for records those topics report but
    never serve. So once the broker is back: drop the workers' changelog topics (their state was
    lost with the broker anyway) and restart the workers, which recover from empty changelogs;
    the persister restores catalog, promotions and consents, and offers a worker decides again
    keep their ``offer_id`` (same cooldown window), which the sink's Redis markers de-duplicate.
    """

    def __init__(self, settings: Settings, stack: object,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.stack = stack
        self.on_event = on_event or (lambda m: log.info("%s", m))
        self.seen = self._broker_restarts()
        self.handled = 0
        self._thread: threading.Thread | None = None

    def _broker_restarts(self) -> int:
        running = getattr(self.stack, "services", {}).get("broker")
        return int(running.restarts) if running is not None else 0

    def check(self) -> None:
        """Call from the supervision loop; the work runs in a thread."""
        restarts = self._broker_restarts()
        if restarts > self.seen and (self._thread is None or not self._thread.is_alive()):
            self.seen = restarts
            self._thread = threading.Thread(target=self._handle, daemon=True,
                                            name="broker-restart")
            self._thread.start()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _handle(self) -> None:
        import os  # noqa: PLC0415
        import signal  # noqa: PLC0415

        from instore.kafka import ensure_topics, make_admin, wait_for_broker  # noqa: PLC0415

        services = getattr(self.stack, "services", {})
        workers = [services[name] for name in services if name.startswith("worker")]
        try:
            for running in workers:  # hold the supervisor's restarts until the topics are gone
                running.spec.restart = False
                if running.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(running.proc.pid, signal.SIGKILL)
                    running.proc.wait(10)
            wait_for_broker(self.settings, timeout_s=60)
            ensure_topics(self.settings)
            dropped: list[str] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                left = faust_changelogs(self.settings)
                if not left:
                    break
                dropped += [n for n in left if n not in dropped]
                for fut in make_admin(self.settings).delete_topics(
                        left, operation_timeout=10).values():
                    with contextlib.suppress(KafkaException):
                        fut.result()
                time.sleep(0.5)
            self.handled += 1
            self.on_event(f"broker restarted empty: dropped {len(dropped)} changelog topics, "
                          f"restarting {len(workers)} worker(s)")
        except Exception as exc:  # noqa: BLE001 - the supervisor must keep running
            self.on_event(f"broker restart handling failed: {type(exc).__name__}: {exc}")
        finally:
            for running in workers:
                running.spec.restart = True
                if running.proc.poll() is not None:  # stopped on purpose: restart it now
                    running.next_restart_at = time.monotonic()
