"""The Faust app: positions -> proximity -> NEARBY_CUSTOMERS -> policy -> offers.

Agents batch with ``take_events`` and read raw bytes (orjson/pydantic-core), and send with the
producer directly: Faust's per-event machinery is the ceiling, so the agents add as little as
possible on top of it. A batch's outputs flow on while the agent takes the next batch; its
input events are held (Faust does not acknowledge them) until the broker has acknowledged all
of its outputs (stream_apps/output.py), so offsets are committed only after the outputs are in
the broker (at-least-once; effects are idempotent by key and ``offer_id``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaException

from instore import topics as t
from instore.health import worker_agents
from instore.records import DeadLetter, dead_letter, dead_letter_reason
from instore.settings import LOOPBACK, Settings, get_settings
from stream_apps import analytics, transport
from stream_apps.analytics import DwellTracker
from stream_apps.gc_pauses import GcPauses, LoopLag
from stream_apps.gc_pauses import freeze as gc_freeze
from stream_apps.output import DeliveryFailed, Output
from stream_apps.policy import PolicyConfig
from stream_apps.policy_table import PolicyTable
from stream_apps.processor import Derived, PolicyProcessor, ProximityProcessor, Shoppers
from stream_apps.serving_writer import ServingWriter
from stream_apps.views import Views
from stream_apps.watchdog import OffsetProbe, StallWatch, consumer_state

log = logging.getLogger("stream_apps")


def _credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol.startswith("SASL"):
        import ssl  # noqa: PLC0415

        ctx = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location) \
            if settings.kafka_security_protocol == "SASL_SSL" else None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=(settings.kafka_sasl_password.get_secret_value()
                      if settings.kafka_sasl_password else None),
            ssl_context=ctx, mechanism=settings.kafka_sasl_mechanism,
        )
    if settings.kafka_security_protocol == "SSL":
        import ssl  # noqa: PLC0415

        return faust.SSLCredentials(ssl.create_default_context(cafile=settings.kafka_ssl_ca_location))
    return None


class UidTable(faust.Table):  # type: ignore[misc]
    """A table keyed by uid whose changelog partition is the uid's partition in the source
    topics (murmur2 of the raw uid, as every producer of ours and Java's partition it), so the
    worker that owns a shopper's positions also restores that shopper's state, whatever event
    of a batch happens to be current when the state is written."""

    def partition_for_key(self, key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions


class WorkerApp(faust.App):  # type: ignore[misc]
    """A Faust app on the worker's transport (stream_apps/transport.py): the topics named in
    ``batch_handlers`` reach their handler a fetched batch at a time."""

    batch_handlers: dict[str, transport.BatchHandler]
    fetch_wait_ms: int = 1500  # Faust's; the worker sets WORKER_FETCH_WAIT_MS

    def _new_transport(self) -> Any:
        return transport.Transport(self.conf.broker_consumer, self)


def _faust_app(settings: Settings) -> WorkerApp:
    datadir = (settings.data_dir / "faust").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        settings.app_id,
        broker=transport.broker_url(settings),
        broker_credentials=_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        web_bind=LOOPBACK,
        web_port=settings.worker_web_port,
        datadir=str(datadir),
        producer_linger=0.005,
        producer_acks=-1,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        table_standby_replicas=0,
        broker_rebalance_timeout=settings.worker_rebalance_timeout_s,
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=1.0,
        # Faust's table manager without its fixed 1 s pause at start (see transport.py).
        TableManager=transport.TableManager,
    )
    app.fetch_wait_ms = settings.worker_fetch_wait_ms
    return app


def create_app(settings: Settings, loglevel: str = "WARNING") -> faust.App:
    """The worker's Faust app: its agents, tasks and timers (see :class:`Worker`)."""
    app = _faust_app(settings)
    Worker(app, settings, loglevel).install()
    return app


class Worker:
    """The Faust shell around the pure processors (stream_apps/processor.py): feeds them
    batches, sends what they derive, writes the serving store, and acknowledges a batch's
    input records once the broker has acknowledged all its outputs."""

    def __init__(self, app: WorkerApp, settings: Settings, loglevel: str) -> None:
        self.app = app
        self.settings = settings
        self.loglevel = loglevel
        self.stats: Counter[str] = Counter()
        self.writer = ServingWriter(settings.redis_address)
        # One engine writes NEARBY_CUSTOMERS: with NEARBY_ENGINE=ksqldb the proximity agent
        # does not run even when WORKER_AGENTS names it (health.worker_agents).
        self.enabled = enabled = worker_agents(settings)
        # The worker that computes NEARBY rows also applies the policy and counts dwell to
        # them in the same pass (the rows are still written to the topic for everyone else).
        # The agents that read NEARBY_CUSTOMERS from the topic serve rows computed by another
        # engine (ksqlDB): NEARBY_ENGINE=ksqldb, or WORKER_AGENTS without "proximity".
        self.policy_inline = {"proximity", "policy"} <= enabled
        self.dwell = DwellTracker(settings.dwell_gap_s) \
            if {"proximity", "analytics"} <= enabled else None
        self.out_nearby = Output(settings, "proximity")
        # the topic-reading policy agent's own producer (each agent drains only its own sends)
        self.out_offers = Output(settings, "policy") \
            if "policy" in enabled and not self.policy_inline else self.out_nearby
        self.out_views = Output(settings, "views")
        self.outputs = [self.out_nearby] if self.out_offers is self.out_nearby \
            else [self.out_nearby, self.out_offers]
        self.views = Views(settings, self.view_dead_letter)
        self.policy_cfg = PolicyConfig(settings.dwell_s, settings.dwell_gap_s,
                                       settings.cooldown_s, settings.cap_per_hour,
                                       settings.offer_ttl_s)
        # Keys are the uid (JSON both ways: Faust's changelog recovery decodes keys with the
        # schema's serializer, so a recovered key equals a live one).
        self.policy_table = UidTable(
            app, name="policy-state", default=None, partitions=settings.kafka_partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
            beacon=app.tables.beacon,
        )
        app.tables.add(self.policy_table)
        # written straight to the table's store; the changelog goes with each batch (publish)
        self.policy_writes = PolicyTable(self.policy_table)
        self.shoppers = Shoppers(self.policy_writes, self.views.consents, self.policy_cfg)
        self.processed: dict[int, int] = {}  # positions partition -> last offset handled
        self.gc_pauses = GcPauses()
        self.loop_lag = LoopLag()
        self.stopping: str | None = None  # why the worker is stopping itself

    # -- dead letters, acknowledgements, stopping ------------------------------------------

    def send_dead_letters(self, out: Output, letters: list[DeadLetter]) -> None:
        for record in letters:
            for name in ("dead_letters", f"dead:{dead_letter_reason(record.error)}"):
                self.stats[name] += 1
                self.writer.count(name)  # the serving totals the API's /totals and metrics read
            out.send(t.DEAD_LETTERS.name, None, record.to_json(), None)

    async def view_dead_letter(self, source: str, error: str, raw: bytes | None,
                               partition: int, offset: int) -> None:
        self.send_dead_letters(self.out_views, [dead_letter(source, error, raw, partition,
                                                            offset)])
        await self.out_views.drain()

    def hold(self, events: Any) -> tuple[int, list[Any]]:
        """Keep a batch's events unacknowledged when the agent moves on (take_events acks
        them; the extra reference makes that ack not the last one) until :meth:`release`."""
        messages = [event.message for event in events]
        for message in messages:
            message.incref()
        return self.app.consumer_generation_id, messages

    def stop_worker(self, reason: str) -> None:
        """A clean stop (leave the group, commit what was acknowledged) as on SIGTERM; the
        supervisor restarts us. Hard exit if that hangs."""
        if self.stopping is not None:
            return
        self.stopping = reason
        log.error("%s: stopping so that the worker is restarted", reason)
        threading.Timer(20.0, os._exit, args=(75,)).start()
        os.kill(os.getpid(), signal.SIGTERM)

    def acknowledge(self, held: list[Any]) -> None:
        """Acknowledge the events of batches whose outputs are all in the broker (Faust
        commits their offsets on its next commit). A batch taken before a rebalance is
        dropped instead: Faust seeks every partition back to its committed offset after a
        rebalance, so those events are read and handled again."""
        generation = self.app.consumer_generation_id
        consumer = self.app.consumer
        for item in held:
            if item is None:
                continue
            taken_in, messages = item
            if taken_in != generation:
                continue
            for message in messages:
                message.ack(consumer)

    def release(self, out: Output) -> None:
        try:
            self.acknowledge(out.released())
        except DeliveryFailed as exc:
            self.stop_worker(f"outputs not accepted by the broker ({exc})")

    async def release_acknowledged(self) -> None:
        """Acknowledge finished batches when traffic pauses (agents also do it per batch)."""
        for out in self.outputs:
            self.release(out)

    async def settle_outputs(self, sender: Any, /, *_args: Any, **_: Any) -> None:
        """On stop, after the partitions are paused and before the final commit: wait for
        the outputs in flight, so that a restart does not handle those batches again."""
        for out in self.outputs:
            try:
                self.acknowledge(await out.drain(timeout_s=10.0))
            except DeliveryFailed as exc:
                log.warning("stopping with unacknowledged outputs: %s", exc)
        await self.writer.settle()  # the serving writes in flight (offers the API looks up)

    # -- the agents ------------------------------------------------------------------------

    async def publish(self, out: Output, derived: Derived, held: Any) -> None:
        """Send a batch's outputs, seal them with the batch's input records (acknowledged
        once the broker has them all), and write the serving store."""
        nearby = t.NEARBY_CUSTOMERS.name
        for key, hits, ts in derived.rows:
            out.send_rows(nearby, key, hits, ts)
        for offer in derived.offers:
            out.send(t.OFFERS.name, offer.uid.encode(), offer.to_json(), offer.ts)
        changelog = self.policy_writes.topic
        for partition, key, value in self.policy_writes.take():
            out.send(changelog, key, value, None, partition)
        if derived.dead_letters:
            self.send_dead_letters(out, derived.dead_letters)
        out.seal(held)
        self.release(out)
        self.writer.add_dwell(derived.dwell)  # derived.per_promo is the writer's own counter
        self.stats.update(derived.counts)
        await self.writer.write_batch(derived.live, derived.offers, derived.counts)
        # backpressure: at most this many batches ahead of the broker
        await out.room(self.settings.worker_max_in_flight)

    async def proximity(self, stream: Any) -> None:
        """Positions -> NEARBY_CUSTOMERS rows (and, in the same pass, offers and dwell), a
        fetched batch of position records at a time (see transport.py)."""
        await self.views.ready.wait()
        processor = ProximityProcessor(
            self.views.proximity, self.views.consents,
            self.shoppers if self.policy_inline else None, self.dwell,
            naive=self.settings.proximity_index == "naive",
            per_promo=self.writer.pending_per_promo)
        app, stats = self.app, self.stats
        async for records in stream:
            generation = records[0].generation_id
            if generation != app.consumer_generation_id:
                continue  # fetched before a rebalance: Faust seeks back and reads them again
            t_batch = time.perf_counter()
            derived = processor.process(records, generation)
            self.processed.update(derived.last_offsets)
            t_work = time.perf_counter()
            stats["proximity_work_ms"] += int((t_work - t_batch) * 1000)
            await self.publish(self.out_nearby, derived, (generation, records))
            stats["proximity_wait_ms"] += int((time.perf_counter() - t_work) * 1000)

    async def policy(self, stream: faust.StreamT) -> None:
        """NEARBY_CUSTOMERS rows computed by another engine -> offers."""
        assert isinstance(stream, faust.Stream)  # take_events is on Stream, not StreamT
        await self.views.ready.wait()
        processor = PolicyProcessor(self.views.proximity, self.shoppers,
                                    per_promo=self.writer.pending_per_promo)
        async for events in stream.take_events(self.settings.worker_batch,
                                               within=self.settings.worker_batch_within_s):
            derived = processor.process([event.message for event in events],
                                        self.app.consumer_generation_id)
            await self.publish(self.out_offers, derived, self.hold(events))

    def install_proximity(self) -> None:
        """Position records arrive a fetched batch at a time on a queue a few batches deep
        (the fetcher waits when the proximity loop is behind). A plain asyncio queue, not a
        Faust channel: a channel drops what is put on it while its reader is not subscribed,
        and clears itself whenever the flow resumes after a rebalance, which lost the batches
        in flight across a restart. Batches taken before a rebalance are skipped by
        generation."""
        app = self.app
        position_batches: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=4)
        step = self.settings.worker_batch

        async def hand_over(records: list[Any]) -> None:
            # At most worker_batch positions at a time: a fetch after a pause can hold
            # thousands, and the event loop (timers, acknowledgements, Redis) waits while the
            # loop works through one batch.
            for i in range(0, len(records), step):
                await position_batches.put(records[i:i + step])

        async def batches() -> Any:
            while True:
                yield await position_batches.get()

        positions_topic = app.topic(t.CUSTOMERS_LOCATIONS.name, value_serializer="raw",
                                    key_serializer="raw")
        app.topics.add(positions_topic)  # subscribed, but delivered to hand_over
        app.batch_handlers = {positions_topic.get_topic_name(): hand_over}

        @app.task
        async def run_proximity() -> None:
            try:
                await self.proximity(batches())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: restart from the committed offsets
                log.exception("proximity loop failed")
                self.stop_worker(f"proximity loop failed ({type(exc).__name__})")

    # -- tasks and timers ------------------------------------------------------------------

    async def replicate_views(self) -> None:
        await self.views.run()

    async def watch_loop_lag(self) -> None:
        await self.loop_lag.run()

    async def gc_after_load(self) -> None:
        self.gc_pauses.install()
        await self.views.ready.wait()
        if self.settings.worker_gc_freeze:
            log.info("%d objects loaded at start exempt from garbage collection", gc_freeze())

    async def prune_live_state(self) -> None:
        self.shoppers.prune()

    async def flush_serving(self) -> None:
        if time.monotonic() - self.writer.last_flush >= self.writer.interval_s:
            await self.writer.flush()

    async def report(self) -> None:
        if self.stats:
            log.info("worker totals: %s", dict(sorted(self.stats.items())))
        log.info("worker event loop: %s; garbage collection: %s", self.loop_lag.report(),
                 self.gc_pauses.report())

    async def enable_our_logs(self) -> None:
        """Faust configures logging when the worker starts (disabling loggers that existed);
        ours say lifecycle and totals even when Faust itself logs warnings only."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] "
                                               "%(name)s: %(message)s"))
        for name in ("stream_apps", "instore"):
            logger = logging.getLogger(name)
            logger.disabled = False
            logger.setLevel(logging.INFO)
            logger.handlers = [handler]
            logger.propagate = False
        for name in ("stream_apps.views", "stream_apps.output", "stream_apps.serving_writer"):
            logging.getLogger(name).disabled = False
        # The worker's root logger ends up at DEBUG whatever `-l` says (the handler filters),
        # so every aiokafka/Faust debug call built a record: ~6 % of the worker's CPU.
        logging.getLogger().setLevel(logging.getLevelName(self.loglevel.upper()))
        log.info("worker started: agents %s", ", ".join(sorted(self.enabled)))
        if self.settings.nearby_engine == "ksqldb":
            log.info("NEARBY_ENGINE=ksqldb: ksqlDB writes %s, the proximity agent is off%s; "
                     "policy and analytics read the topic", t.NEARBY_CUSTOMERS.name,
                     " (WORKER_AGENTS names it)" if "proximity" in self.settings.worker_agent_set
                     else "")

    def install(self) -> None:
        """Register the agents, tasks and timers with the Faust app."""
        app, settings, enabled = self.app, self.settings, self.enabled
        for task in (self.replicate_views, self.watch_loop_lag, self.gc_after_load,
                     self.enable_our_logs):
            app.task(task)
        app.timer(interval=60.0)(self.prune_live_state)
        app.timer(interval=0.02)(self.release_acknowledged)
        app.timer(interval=self.writer.interval_s)(self.flush_serving)
        app.timer(interval=settings.worker_report_interval_s)(self.report)
        app.on_before_shutdown.connect(self.settle_outputs)
        if "proximity" in enabled:
            self.install_proximity()
            if settings.worker_stall_s > 0:
                Liveness(self).install()
        if "policy" in enabled and not self.policy_inline:
            nearby_topic = app.topic(t.NEARBY_CUSTOMERS.name, value_serializer="raw",
                                     key_serializer="raw")
            app.agent(nearby_topic, name="policy")(self.policy)
        if "analytics" in enabled:
            analytics.agents(app, settings, dwell_from_topic=self.dwell is None)


class Liveness:
    """Exit (the supervisor restarts us) when a positions partition stopped moving while
    events wait on it: see stream_apps/watchdog.py."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.app = worker.app
        self.stall_s = worker.settings.worker_stall_s
        self.watch = StallWatch(self.stall_s)
        self.offsets = OffsetProbe(worker.settings, t.CUSTOMERS_LOCATIONS.name)

    def install(self) -> None:
        self.app.timer(interval=max(1.0, self.stall_s / 6))(self.liveness)

    def settled(self) -> bool:
        """Not rebalancing, not restoring tables, flow running: partitions should move."""
        app = self.app
        return not (app.rebalancing or app.in_recovery or not app.flow_control.is_active())

    def handled(self, partitions: Any, committed: dict[int, int]) -> dict[int, int]:
        """The last positions offset handled per partition: by the agent, or before the
        committed offset (-1: none)."""
        processed = self.worker.processed
        return {p: max(processed.get(p, -1), committed.get(p, 0) - 1) for p in partitions}

    async def liveness(self) -> None:
        if not self.settled():
            self.watch.observe(time.monotonic(), set(), {}, {})  # not while it is expected
            return
        topic = t.CUSTOMERS_LOCATIONS.name
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
        if not assigned:
            return
        try:
            ends, committed = await asyncio.to_thread(self.offsets.read, assigned)
        except KafkaException as exc:
            log.warning("liveness: offsets unavailable (%s)", exc)
            return
        stalled = self.watch.observe(time.monotonic(), assigned,
                                     self.handled(assigned, committed), ends)
        if not stalled:
            return
        log.error("partition(s) %s of %s have not moved for %.0f s while events wait",
                  stalled, topic, self.stall_s)
        try:
            log.error("liveness: consumer state %s (processed %s, committed %s, ends %s)",
                      consumer_state(self.app, topic),
                      {p: self.worker.processed.get(p) for p in assigned}, committed, ends)
        except Exception:
            log.exception("liveness: consumer state unavailable")
        # A clean stop: a restart after an unclean exit is what stalls.
        self.worker.stop_worker("liveness: a partition stopped moving")


def run_worker(loglevel: str = "warning") -> None:
    """Run one worker in this process (the `instore worker` command)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(get_settings(), loglevel)
    level = {"warning": "warn", "critical": "crit"}.get(loglevel.lower(), loglevel.lower())
    # No web server: several workers share a machine, and nothing of ours reads Faust's web.
    sys.argv = [sys.argv[0], "worker", "-l", level, "--without-web"]
    app.main()
