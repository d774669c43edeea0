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
from instore.geo import GeoError
from instore.health import worker_agents
from instore.proximity import UnknownStore
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Offer,
    RecordError,
    dead_letter,
    decode,
)
from instore.settings import LOOPBACK, Settings, get_settings
from stream_apps import analytics, transport
from stream_apps.analytics import DwellTracker
from stream_apps.gc_pauses import GcPauses, LoopLag
from stream_apps.gc_pauses import freeze as gc_freeze
from stream_apps.output import DeliveryFailed, Output
from stream_apps.policy import PolicyConfig, ShopperState, decide, decide_position
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

    def _new_transport(self) -> Any:
        return transport.Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings, loglevel: str = "WARNING") -> faust.App:
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
    policy_cfg = PolicyConfig(settings.dwell_s, settings.dwell_gap_s, settings.cooldown_s,
                              settings.cap_per_hour, settings.offer_ttl_s)
    positions_topic = app.topic(t.CUSTOMERS_LOCATIONS.name, value_serializer="raw",
                                key_serializer="raw")
    nearby_topic = app.topic(t.NEARBY_CUSTOMERS.name, value_serializer="raw", key_serializer="raw")
    # Keys are the uid (JSON both ways: Faust's changelog recovery decodes keys with the
    # schema's serializer, so a recovered key equals a live one).
    policy_state = UidTable(
        app, name="policy-state", default=None, partitions=settings.kafka_partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        beacon=app.tables.beacon,
    )
    app.tables.add(policy_state)
    stats: Counter[str] = Counter()
    writer = ServingWriter(settings.redis_address)
    # One engine writes NEARBY_CUSTOMERS: with NEARBY_ENGINE=ksqldb the proximity agent does
    # not run even when WORKER_AGENTS names it (health.worker_agents).
    enabled = worker_agents(settings)
    # The worker that computes NEARBY rows also applies the policy and counts dwell to them
    # in the same pass (the rows are still written to the topic for everyone else): reading
    # ~20 rows per position back through Faust would cost several times the matching. The
    # agents that read NEARBY_CUSTOMERS from the topic serve rows computed by another engine
    # (ksqlDB): NEARBY_ENGINE=ksqldb, or WORKER_AGENTS without "proximity".
    policy_inline = {"proximity", "policy"} <= enabled
    dwell = DwellTracker(settings.dwell_gap_s) if {"proximity", "analytics"} <= enabled else None
    out_nearby = Output(settings, "proximity")
    # the topic-reading policy agent's own producer (each agent drains only its own sends)
    out_offers = Output(settings, "policy") if "policy" in enabled and not policy_inline \
        else out_nearby
    out_views = Output(settings, "views")

    def send_dead_letter(out: Output, source: str, error: str, raw: bytes | None,
                         partition: int, offset: int) -> None:
        reason = error.split(":", 1)[0][:60]
        for name in ("dead_letters", f"dead:{reason}"):
            stats[name] += 1
            writer.count(name)  # the serving totals the API's /totals and metrics read
        record = dead_letter(source, error, raw, partition, offset)
        out.send(t.DEAD_LETTERS.name, None, record.to_json(), None)

    async def view_dead_letter(source: str, error: str, raw: bytes | None,
                               partition: int, offset: int) -> None:
        send_dead_letter(out_views, source, error, raw, partition, offset)
        await out_views.drain()

    views = Views(settings, view_dead_letter)
    app.views = views  # type: ignore[attr-defined]
    app.stats = stats  # type: ignore[attr-defined]

    @app.task
    async def replicate_views() -> None:
        await views.run()

    gc_pauses = GcPauses()
    loop_lag = LoopLag()

    @app.task
    async def watch_loop_lag() -> None:
        await loop_lag.run()

    @app.task
    async def gc_after_load() -> None:
        gc_pauses.install()
        await views.ready.wait()
        if settings.worker_gc_freeze:
            log.info("%d objects loaded at start exempt from garbage collection", gc_freeze())

    # The policy state as the agents run it (dwell episodes included); the table (and its
    # changelog) gets a shopper's state only when an offer is made: the cooldown and hourly cap
    # must survive a restart, an episode need not (see ShopperState.offered). Writing every
    # episode start made the changelog ~5x longer, and a restarted worker replays all of it
    # (the embedded broker does not compact). Cleared on every rebalance: a shopper whose
    # partition went elsewhere and came back is read from the table again.
    live_state: dict[str, ShopperState] = {}
    live_generation = [app.consumer_generation_id]

    def shopper_of(uid: str, touched: dict[str, ShopperState]) -> ShopperState:
        shopper = touched.get(uid)
        if shopper is None:
            if live_generation[0] != app.consumer_generation_id:
                live_state.clear()
                live_generation[0] = app.consumer_generation_id
            shopper = live_state.get(uid)
            if shopper is None:
                shopper = ShopperState.from_dict(policy_state.get(uid))
            touched[uid] = shopper
        return shopper

    def save_shoppers(touched: dict[str, ShopperState]) -> None:
        for uid, shopper in touched.items():
            if views.consents.get(uid) is None:
                live_state.pop(uid, None)
                if policy_state.get(uid) is not None:
                    policy_state.pop(uid, None)  # erased or never opted in: keep nothing
                continue
            if shopper.changed:
                shopper.prune(shopper.newest(), policy_cfg)
                shopper.changed = False
            if shopper.offered:
                policy_state[uid] = shopper.to_dict()
                shopper.offered = False
            if shopper.near or shopper.last_offer:
                live_state[uid] = shopper
            else:
                live_state.pop(uid, None)

    @app.timer(interval=60.0)
    async def prune_live_state() -> None:
        """Forget the in-memory state of shoppers not seen for a while (their cooldowns are
        in the table) and of shoppers whose consent is gone."""
        newest = {uid: shopper.newest() for uid, shopper in live_state.items()}
        now = max(newest.values(), default=0)
        horizon = policy_cfg.gap_ms + 60_000
        for uid, seen in newest.items():
            if views.consents.get(uid) is None or now - seen > horizon:  # erased, or gone quiet
                del live_state[uid]

    def send_offer(offer: Offer, offers: list[Offer]) -> None:
        offers.append(offer)
        out_nearby.send(t.OFFERS.name, offer.uid.encode(), offer.to_json(), offer.ts)

    processed: dict[int, int] = {}  # positions partition -> last offset the agent handled

    def hold(events: Any) -> tuple[int, list[Any]]:
        """Keep a batch's events unacknowledged when the agent moves on (take_events acks
        them; the extra reference makes that ack not the last one) until :func:`release`."""
        messages = [event.message for event in events]
        for message in messages:
            message.incref()
        return app.consumer_generation_id, messages

    stopping: list[str] = []

    def stop_worker(reason: str) -> None:
        """A clean stop (leave the group, commit what was acknowledged) as on SIGTERM; the
        supervisor restarts us. Hard exit if that hangs."""
        if stopping:
            return
        stopping.append(reason)
        log.error("%s: stopping so that the worker is restarted", reason)
        threading.Timer(20.0, os._exit, args=(75,)).start()
        os.kill(os.getpid(), signal.SIGTERM)

    def acknowledge(held: list[Any]) -> None:
        """Acknowledge the events of batches whose outputs are all in the broker (Faust
        commits their offsets on its next commit). A batch taken before a rebalance is
        dropped instead: Faust seeks every partition back to its committed offset after a
        rebalance, so those events are read and handled again."""
        generation = app.consumer_generation_id
        consumer = app.consumer
        for item in held:
            if item is None:
                continue
            taken_in, messages = item
            if taken_in != generation:
                continue
            for message in messages:
                message.ack(consumer)

    def release(out: Output) -> None:
        try:
            acknowledge(out.released())
        except DeliveryFailed as exc:
            stop_worker(f"outputs not accepted by the broker ({exc})")

    outputs = [out_nearby] if out_offers is out_nearby else [out_nearby, out_offers]

    @app.timer(interval=0.02)
    async def release_acknowledged() -> None:
        """Acknowledge finished batches when traffic pauses (agents also do it per batch)."""
        for out in outputs:
            release(out)

    @app.on_before_shutdown.connect
    async def settle_outputs(sender: Any, /, *_args: Any, **_: Any) -> None:
        """On stop, after the partitions are paused and before the final commit: wait for
        the outputs in flight, so that a restart does not handle those batches again."""
        for out in outputs:
            try:
                acknowledge(await out.drain(timeout_s=10.0))
            except DeliveryFailed as exc:
                log.warning("stopping with unacknowledged outputs: %s", exc)

    async def proximity(stream: Any) -> None:
        """Positions -> NEARBY_CUSTOMERS rows (and, in the same pass, offers and dwell), a
        fetched batch of position records at a time (see transport.py). A batch's records are
        acknowledged to Faust (and so committed) only once the broker has acknowledged all its
        rows and offers."""
        await views.ready.wait()
        state = views.proximity
        nearby_name = t.NEARBY_CUSTOMERS.name
        naive = settings.proximity_index == "naive"
        match = state.match_hits_naive if naive else state.match_hits
        promotions = state.promotions
        consents = views.consents
        async for records in stream:
            if records[0].generation_id != app.consumer_generation_id:
                continue  # fetched before a rebalance: Faust seeks back and reads them again
            t_batch = time.perf_counter()
            live: list[tuple[str, str, float, float, int]] = []
            batch = Counter[str]()
            # counted straight into the serving writer's pending sums (flushed every second)
            per_promo = writer.pending_per_promo
            dwell_sums = writer.pending_dwell
            offers: list[Offer] = []
            touched: dict[str, ShopperState] = {}
            n_rows = positions_ok = newest = 0
            for msg in records:
                processed[msg.partition] = msg.offset
                try:
                    pos = decode(CustomerLocation, msg.value)
                    ts = pos.ts if pos.ts is not None else int(msg.timestamp * 1000)
                    hits = match(pos, ts)
                except RecordError as exc:
                    send_dead_letter(out_nearby, t.CUSTOMERS_LOCATIONS.name, exc.reason,
                                     msg.value, msg.partition, msg.offset)
                    continue
                except UnknownStore as exc:
                    if pos.store_id is None:
                        batch["outside_stores"] += 1
                    else:
                        send_dead_letter(out_nearby, t.CUSTOMERS_LOCATIONS.name, str(exc),
                                         msg.value, msg.partition, msg.offset)
                    continue
                except GeoError as exc:
                    send_dead_letter(out_nearby, t.CUSTOMERS_LOCATIONS.name,
                                     f"invalid position: {exc}", msg.value, msg.partition,
                                     msg.offset)
                    continue
                positions_ok += 1
                newest = max(newest, ts)
                uid = pos.uid
                consent = consents.get(uid)
                if hits:
                    out_nearby.send_rows(nearby_name, uid.encode(), hits, ts)
                    for hit in hits:
                        pk = (hit[1], hit[0])
                        per_promo[pk] = per_promo.get(pk, 0) + 1
                    n_rows += len(hits)
                    if dwell is not None:
                        if naive:  # the country scan's rows may name several stores
                            for h in hits:
                                dwell.add(uid, h[0], h[2], ts, dwell_sums)
                        else:
                            dwell.add_position(uid, hits[0][0], [h[2] for h in hits], ts,
                                               dwell_sums)
                    if policy_inline:
                        if consent is not None and consent.opted_in:
                            for offer in decide_position(uid, hits, ts, shopper_of(uid, touched),
                                                         promotions, policy_cfg, batch):
                                send_offer(offer, offers)
                        else:
                            batch["policy:no_consent"] += len(hits)
                            if consent is None and uid not in touched and (
                                    uid in live_state or policy_state.get(uid) is not None):
                                touched[uid] = ShopperState()  # erased: dropped by save_shoppers
                if consent is not None and consent.opted_in and (pos.store_id or hits):
                    # Only opted-in shoppers appear on the live floor map (an erased or
                    # anonymous shopper's uid never lands in the serving store).
                    store_id = pos.store_id or state.resolve_store(pos)
                    live.append((uid, store_id, pos.latitude, pos.longitude, ts))
            if touched:
                save_shoppers(touched)
            if dwell is not None and newest:
                dwell.prune(newest)
            batch["positions"] += positions_ok
            batch["nearby"] += n_rows
            batch["offers"] += len(offers)
            batch["proximity_batches"] += 1
            # The batch's records are acknowledged once the broker has all its outputs.
            out_nearby.seal((records[0].generation_id, records))
            release(out_nearby)
            t_work = time.perf_counter()
            batch["proximity_work_ms"] += int((t_work - t_batch) * 1000)
            stats.update(batch)
            await writer.write_batch(live, offers, batch)
            # backpressure: at most this many batches ahead of the broker
            await out_nearby.room(settings.worker_max_in_flight)
            stats["proximity_wait_ms"] += int((time.perf_counter() - t_work) * 1000)

    async def policy(stream: faust.StreamT) -> None:
        """NEARBY_CUSTOMERS rows computed by another engine -> offers."""
        assert isinstance(stream, faust.Stream)  # take_events is on Stream, not StreamT
        await views.ready.wait()
        async for events in stream.take_events(settings.worker_batch,
                                               within=settings.worker_batch_within_s):
            offers: list[Offer] = []
            touched: dict[str, ShopperState] = {}
            batch = Counter[str]()
            per_promo = writer.pending_per_promo  # flushed every second
            for event in events:
                msg = event.message
                try:
                    row = decode(NearbyCustomer, msg.value)
                except RecordError as exc:
                    send_dead_letter(out_offers, t.NEARBY_CUSTOMERS.name, exc.reason, msg.value,
                                     msg.partition, msg.offset)
                    continue
                pk = (row.pid, row.store_id)
                per_promo[pk] = per_promo.get(pk, 0) + 1
                batch["nearby"] += 1
                verdict, offer = decide(row, shopper_of(row.uid, touched),
                                        views.consents.get(row.uid),
                                        views.proximity.promotions.get(row.pid), policy_cfg)
                batch[f"policy:{verdict}"] += 1
                if offer is not None:
                    offers.append(offer)
                    out_offers.send(t.OFFERS.name, offer.uid.encode(), offer.to_json(), offer.ts)
            save_shoppers(touched)
            out_offers.seal(hold(events))
            release(out_offers)
            batch["offers"] += len(offers)
            stats.update(batch)
            # the same totals as the inline path (rows, offers, verdicts) in the serving store
            await writer.write_batch([], offers, batch)
            await out_offers.room(settings.worker_max_in_flight)

    if "proximity" in enabled:
        # Position records arrive a fetched batch at a time on a queue a few batches deep (the
        # fetcher waits when the proximity loop is behind). A plain asyncio queue, not a Faust
        # channel: a channel drops what is put on it while its reader is not subscribed, and
        # clears itself whenever the flow resumes after a rebalance, which lost the batches in
        # flight across a restart. Batches taken before a rebalance are skipped by generation.
        position_batches: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=4)

        async def hand_over(records: list[Any]) -> None:
            # At most worker_batch positions at a time: a fetch after a pause can hold
            # thousands, and the event loop (timers, acknowledgements, Redis) waits while the
            # loop works through one batch.
            step = settings.worker_batch
            for i in range(0, len(records), step):
                await position_batches.put(records[i:i + step])

        async def batches() -> Any:
            while True:
                yield await position_batches.get()

        app.topics.add(positions_topic)  # subscribed, but delivered to hand_over
        app.batch_handlers = {positions_topic.get_topic_name(): hand_over}

        @app.task
        async def run_proximity() -> None:
            try:
                await proximity(batches())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: restart from the committed offsets
                log.exception("proximity loop failed")
                stop_worker(f"proximity loop failed ({type(exc).__name__})")
    if "policy" in enabled and not policy_inline:
        app.agent(nearby_topic, name="policy")(policy)

    @app.task
    async def enable_our_logs() -> None:
        # Faust configures logging when the worker starts (disabling loggers that existed);
        # ours say lifecycle and totals even when Faust itself logs warnings only.
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
        logging.getLogger().setLevel(logging.getLevelName(loglevel.upper()))
        log.info("worker started: agents %s", ", ".join(sorted(enabled)))
        if settings.nearby_engine == "ksqldb":
            log.info("NEARBY_ENGINE=ksqldb: ksqlDB writes %s, the proximity agent is off%s; "
                     "policy and analytics read the topic", t.NEARBY_CUSTOMERS.name,
                     " (WORKER_AGENTS names it)" if "proximity" in settings.worker_agent_set
                     else "")

    def settled() -> bool:
        """Not rebalancing, not restoring tables, flow running: partitions should move."""
        return not (app.rebalancing or app.in_recovery or not app.flow_control.is_active())

    def handled(partitions: Any, committed: dict[int, int]) -> dict[int, int]:
        """The last positions offset handled per partition: by the agent, or before the
        committed offset (-1: none)."""
        return {p: max(processed.get(p, -1), committed.get(p, 0) - 1) for p in partitions}

    if "proximity" in enabled and settings.worker_stall_s > 0:
        watch = StallWatch(settings.worker_stall_s)
        offsets = OffsetProbe(settings, t.CUSTOMERS_LOCATIONS.name)

        @app.timer(interval=max(1.0, settings.worker_stall_s / 6))
        async def liveness() -> None:
            """Exit (the supervisor restarts us) when a partition stopped moving while events
            wait on it: see stream_apps/watchdog.py."""
            if not settled():
                watch.observe(time.monotonic(), set(), {}, {})  # not while it is expected
                return
            assigned = {tp.partition for tp in app.consumer.assignment()
                        if tp.topic == t.CUSTOMERS_LOCATIONS.name}
            if not assigned:
                return
            try:
                ends, committed = await asyncio.to_thread(offsets.read, assigned)
            except KafkaException as exc:
                log.warning("liveness: offsets unavailable (%s)", exc)
                return
            stalled = watch.observe(time.monotonic(), assigned, handled(assigned, committed), ends)
            if stalled:
                log.error("partition(s) %s of %s have not moved for %.0f s while events wait",
                          stalled,
                          t.CUSTOMERS_LOCATIONS.name, settings.worker_stall_s)
                try:
                    log.error("liveness: consumer state %s (processed %s, committed %s, ends %s)",
                              consumer_state(app, t.CUSTOMERS_LOCATIONS.name),
                              {p: processed.get(p) for p in assigned}, committed, ends)
                except Exception:
                    log.exception("liveness: consumer state unavailable")
                # A clean stop: a restart after an unclean exit is what stalls.
                stop_worker("liveness: a partition stopped moving")

    @app.timer(interval=writer.interval_s)
    async def flush_serving() -> None:
        if time.monotonic() - writer.last_flush >= writer.interval_s:
            await writer.flush()

    @app.timer(interval=settings.worker_report_interval_s)
    async def report() -> None:
        if stats:
            log.info("worker totals: %s", dict(sorted(stats.items())))
        log.info("worker event loop: %s; garbage collection: %s", loop_lag.report(),
                 gc_pauses.report())

    if "analytics" in enabled:
        analytics.agents(app, settings, dwell_from_topic=dwell is None)

    return app


def run_worker(loglevel: str = "warning") -> None:
    """Run one worker in this process (the `instore worker` command)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(get_settings(), loglevel)
    level = {"warning": "warn", "critical": "crit"}.get(loglevel.lower(), loglevel.lower())
    # No web server: several workers share a machine, and nothing of ours reads Faust's web.
    sys.argv = [sys.argv[0], "worker", "-l", level, "--without-web"]
    app.main()
