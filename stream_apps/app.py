"""The Faust app: positions -> proximity -> NEARBY_CUSTOMERS -> policy -> offers.

Agents batch with ``take_events`` and read raw bytes (orjson/pydantic-core), and send with the
producer directly: Faust's per-event machinery is the ceiling, so the agents add as little as
possible on top of it. Each batch's sends are awaited before its events are acknowledged, so
offsets are committed only after the outputs are in the broker (at-least-once; effects are
idempotent by key and ``offer_id``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from typing import Any

import faust

from instore import topics as t
from instore.geo import GeoError
from instore.proximity import UnknownStore
from instore.records import (
    CustomerLocation,
    NearbyCustomer,
    Offer,
    RecordError,
    dead_letter,
    decode,
)
from instore.settings import Settings, get_settings
from stream_apps.policy import PolicyConfig, ShopperState, decide
from stream_apps.serving_writer import ServingWriter
from stream_apps.views import Views

log = logging.getLogger("stream_apps")


def _broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(","))


def _credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol.startswith("SASL"):
        import ssl  # noqa: PLC0415

        ctx = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location) \
            if settings.kafka_security_protocol == "SASL_SSL" else None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
            ssl_context=ctx, mechanism=settings.kafka_sasl_mechanism,
        )
    if settings.kafka_security_protocol == "SSL":
        import ssl  # noqa: PLC0415

        return faust.SSLCredentials(ssl.create_default_context(cafile=settings.kafka_ssl_ca_location))
    return None


def create_app(settings: Settings) -> faust.App:  # noqa: C901, PLR0915
    app = faust.App(
        settings.app_id,
        broker=_broker_url(settings),
        broker_credentials=_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        producer_linger=0.005,
        producer_acks=-1,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        table_standby_replicas=0,
    )
    policy_cfg = PolicyConfig(settings.dwell_s, settings.dwell_gap_s, settings.cooldown_s,
                              settings.cap_per_hour, settings.offer_ttl_s)
    positions_topic = app.topic(t.CUSTOMERS_LOCATIONS.name, value_serializer="raw",
                                key_serializer="raw")
    nearby_topic = app.topic(t.NEARBY_CUSTOMERS.name, value_serializer="raw", key_serializer="raw")
    # Keys are the uid's bytes (raw both ways, so a recovered key equals a live one).
    policy_state = app.Table(
        "policy-state", default=None, use_partitioner=True, partitions=settings.kafka_partitions,
        schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="json"),
    )
    stats: Counter[str] = Counter()
    writer = ServingWriter(settings.redis_address)

    async def send_dead_letter(source: str, error: str, raw: bytes | None,
                               partition: int, offset: int) -> None:
        stats["dead_letters"] += 1
        reason = error.split(":", 1)[0][:60]
        stats[f"dead:{reason}"] += 1
        record = dead_letter(source, error, raw, partition, offset)
        fut = await app.producer.send(t.DEAD_LETTERS.name, None, record.to_json(), None, None, None)
        await fut

    views = Views(settings, send_dead_letter)
    app.views = views  # type: ignore[attr-defined]
    app.stats = stats  # type: ignore[attr-defined]

    @app.task
    async def replicate_views() -> None:
        await views.run()

    def kafka_ts(ts_ms: int) -> float:
        # Faust takes seconds; +0.5 ms so the driver's int(ts * 1000) lands exactly on ts_ms.
        return (ts_ms + 0.5) / 1000.0

    @app.agent(positions_topic)
    async def proximity(stream: faust.StreamT) -> None:
        await views.ready.wait()
        state = views.proximity
        async for events in stream.take_events(settings.worker_batch,
                                               within=settings.worker_batch_within_s):
            futs = []
            dead: list[tuple[str, bytes | None, int, int]] = []
            live: list[tuple[str, str, float, float, int]] = []
            rows_out: list[NearbyCustomer] = []
            batch = Counter[str]()
            for event in events:
                msg = event.message
                try:
                    pos = decode(CustomerLocation, msg.value)
                    ts = pos.ts if pos.ts is not None else int(msg.timestamp * 1000)
                    rows = state.match(pos, ts)
                except RecordError as exc:
                    dead.append((exc.reason, msg.value, msg.partition, msg.offset))
                    continue
                except UnknownStore as exc:
                    if pos.store_id is None:
                        batch["outside_stores"] += 1
                    else:
                        dead.append((str(exc), msg.value, msg.partition, msg.offset))
                    continue
                except GeoError as exc:
                    dead.append((f"invalid position: {exc}", msg.value, msg.partition, msg.offset))
                    continue
                batch["positions"] += 1
                live.append((pos.uid, rows[0].store_id if rows else (pos.store_id or ""),
                             pos.latitude, pos.longitude, ts))
                key = pos.uid.encode()
                for row in rows:
                    futs.append(await app.producer.send(
                        t.NEARBY_CUSTOMERS.name, key, row.to_json(), None, kafka_ts(ts), None))
                rows_out.extend(rows)
            for reason, raw, partition, offset in dead:
                await send_dead_letter(t.CUSTOMERS_LOCATIONS.name, reason, raw, partition, offset)
            if futs:
                await asyncio.gather(*futs)
            batch["nearby"] += len(rows_out)
            stats.update(batch)
            await writer.write_batch([p for p in live if p[1]], rows_out, [], batch)

    @app.agent(nearby_topic)
    async def policy(stream: faust.StreamT) -> None:
        await views.ready.wait()
        async for events in stream.take_events(settings.worker_batch,
                                               within=settings.worker_batch_within_s):
            futs = []
            offers: list[Offer] = []
            touched: dict[str, ShopperState] = {}
            batch = Counter[str]()
            for event in events:
                msg = event.message
                try:
                    row = decode(NearbyCustomer, msg.value)
                except RecordError as exc:
                    await send_dead_letter(t.NEARBY_CUSTOMERS.name, exc.reason, msg.value,
                                           msg.partition, msg.offset)
                    continue
                consent = views.consents.get(row.uid)
                shopper = touched.get(row.uid)
                if shopper is None:
                    shopper = ShopperState.from_dict(policy_state.get(row.uid.encode()))
                    touched[row.uid] = shopper
                verdict, offer = decide(row, shopper, consent,
                                        views.proximity.promotions.get(row.pid), policy_cfg)
                batch[f"policy:{verdict}"] += 1
                if offer is not None:
                    offers.append(offer)
                    futs.append(await app.producer.send(
                        t.OFFERS.name, offer.uid.encode(), offer.to_json(), None,
                        kafka_ts(offer.ts), None))
            for uid, shopper in touched.items():
                key = uid.encode()
                if views.consents.get(uid) is None:
                    if policy_state.get(key) is not None:
                        policy_state.pop(key, None)  # erased or never opted in: keep nothing
                    continue
                newest = max([v[1] for v in shopper.near.values()] + shopper.recent + [0])
                shopper.prune(newest, policy_cfg)
                policy_state[key] = shopper.to_dict()
            if futs:
                await asyncio.gather(*futs)
            batch["offers"] += len(offers)
            stats.update(batch)
            await writer.write_batch([], [], offers, Counter(offers=len(offers)))

    @app.timer(interval=30.0)
    async def report() -> None:
        if stats:
            log.info("worker totals: %s", dict(sorted(stats.items())))

    try:
        from stream_apps import analytics  # noqa: PLC0415
    except ImportError:
        analytics = None  # type: ignore[assignment]
    if analytics is not None and hasattr(analytics, "agents"):
        analytics.agents(app, settings)

    return app


def run_worker(loglevel: str = "warning") -> None:
    """Run one worker in this process (the `instore worker` command)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(get_settings())
    sys.argv = [sys.argv[0], "worker", "-l", loglevel]
    app.main()
