"""The push sink: `offers` -> Ably channels ``shopper:{uid}`` (and ``kiosk:{store}:{kiosk}``
while the shopper is checked in there), and `kiosk_interactions` -> check-ins in Redis.

At-least-once with idempotent effects:
1. consume a batch (group ``instore-push-sink``, no auto-commit);
2. skip offers whose ``serving.delivered(offer_id)`` marker exists (already done);
3. publish per channel in batches, message ``id`` = ``offer_id`` (Ably de-duplicates a
   redelivery), retrying 5xx/timeouts with backoff; 4xx and over-size -> `dead_letters`
   (``mobile_push.publisher``);
4. produce ``delivered`` to `offer_events` and flush;
5. set the marker and count ``delivered`` once (one Lua script: SET NX + HINCRBY);
6. commit the batch's offsets.
A crash anywhere re-runs the batch; steps 3 and 5 make the re-run harmless. Consents are read
by a reader of their own (``mobile_push.consents``); the channel rules are
``mobile_push.routing``'s; Redis is retried with ``mobile_push.backoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from confluent_kafka import KafkaException, Message, TopicPartition

from instore import groups, serving
from instore import topics as t
from instore.ably import make_rest, target
from instore.kafka import (
    ensure_topics,
    is_record,
    make_consumer,
    make_producer,
    produce,
    wait_for_broker,
)
from instore.records import (
    KioskInteraction,
    Offer,
    OfferEvent,
    RecordError,
    dead_letter,
    decode,
    now_ms,
)
from instore.settings import Settings
from instore.stats import percentile
from mobile_push import routing
from mobile_push.backoff import Backoff
from mobile_push.consents import ConsentReader
from mobile_push.publisher import AblyPublisher

log = logging.getLogger(__name__)

# What the sink reads (its cloud ACLs grant these: instore/commands/cloud.py WORKLOAD_ACCESS):
# offers and check-ins through its consumer group, consents through a reader of its own.
SUBSCRIBED = (t.OFFERS, t.KIOSK_INTERACTIONS, t.SHOPPER_CONSENTS)
CONSENT_CATCH_UP_S = 5.0  # how long an offer for a shopper whose consent is unknown may wait
DELIVERED_MARKER_TTL_S = 7 * 24 * 3600
BATCH_MAX = 500
CONSUMER_TUNING: dict[str, Any] = {  # the latency path: fetch what is there, notice a dead peer
    "fetch.wait.max.ms": 10,
    "fetch.min.bytes": 1,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 300_000,
    "topic.metadata.refresh.interval.ms": 5000,
}

# SET the marker if absent; only then count the delivery (so a re-run never double counts).
MARK_DELIVERED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[2], 'delivered', 1)
  redis.call('HINCRBY', KEYS[3], 'delivered', 1)
  return 1
end
return 0
"""


def membership(settings: Settings) -> dict[str, Any]:
    """The sink's group session, and its static membership when it has an instance id."""
    config: dict[str, Any] = {
        "session.timeout.ms": int(settings.push_sink_session_timeout_s * 1000)}
    if settings.push_sink_instance_id is not None:
        config["group.instance.id"] = settings.push_sink_instance_id
    return config


@dataclass
class SinkStats:
    batches: int = 0
    offers: int = 0
    published: int = 0
    skipped_delivered: int = 0
    dead_letters: int = 0
    retries: int = 0
    checkins: int = 0
    suppressed: int = 0  # offers for shoppers who no longer allow any channel
    # offer ts -> consumed / -> acknowledged by Ably, in ms (bounded sample for the summary)
    consumed_ms: list[int] = field(default_factory=list)
    acked_ms: list[int] = field(default_factory=list)

    def sample(self, into: list[int], value: int) -> None:
        if len(into) < 200_000:
            into.append(value)

    def line(self) -> str:
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if isinstance(v, int)]
        for name in ("consumed_ms", "acked_ms"):
            vals = getattr(self, name)
            if vals:
                p50, p99 = percentile(vals, 0.50), percentile(vals, 0.99)
                parts.append(f"{name}_p50={p50} {name}_p99={p99}")
        return " ".join(parts)


class PushSink:
    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = groups.PUSH_SINK,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.consumer_overrides = consumer_overrides or {}
        self.stats = SinkStats()
        self._stop = asyncio.Event()
        self.backoff = Backoff(self._stop.is_set, self._count_retry)

    def stop(self) -> None:
        self._stop.set()

    def _count_retry(self) -> None:
        self.stats.retries += 1

    # -- lifecycle ------------------------------------------------------------------------------
    async def _start(self) -> Any:
        """Topics, clients and the consents read to their end; returns the group's consumer,
        subscribed."""
        s = self.settings
        await asyncio.to_thread(wait_for_broker, s, 60.0)
        await asyncio.to_thread(
            ensure_topics,
            s,
            [t.OFFERS, t.KIOSK_INTERACTIONS, t.SHOPPER_CONSENTS, t.OFFER_EVENTS, t.DEAD_LETTERS],
        )
        consumer = make_consumer(s, self.group_id, **(CONSUMER_TUNING | membership(s)
                                                       | self.consumer_overrides))
        self.producer = make_producer(s)
        self.redis = aioredis.from_url(
            s.redis_address, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
        )
        self.mark = self.redis.register_script(MARK_DELIVERED)
        self.rest = make_rest(s)
        self.publisher = AblyPublisher(self.rest, self.backoff, s.push_publish_concurrency)
        # No offer is pushed before the consents written so far are applied.
        self.consents = ConsentReader(s, self.redis, self.backoff, self._dead)
        await self.consents.start(60.0)
        consumer.subscribe(
            [topic.name for topic in SUBSCRIBED if topic is not t.SHOPPER_CONSENTS],
            on_assign=lambda _c, parts: log.info("assigned %d partitions", len(parts)),
            on_revoke=lambda _c, parts: log.info("revoked %d partitions", len(parts)),
        )
        log.info("push sink started: group=%s target=%s", self.group_id, target(s).mode)
        return consumer

    async def run(self) -> None:
        consumer = await self._start()
        # Publishing is the latency path; the follow-up of batch N (offer_events, markers,
        # commit) runs while batch N+1 is consumed and published. At most one follow-up is in
        # flight, so commits stay in order.
        pending: asyncio.Task[None] | None = None
        try:
            while not self._stop.is_set():
                msgs = await asyncio.to_thread(self._poll_batch, consumer)
                good = [m for m in msgs if is_record(m)]
                if not good:
                    await self.consents.apply(0)  # opt-outs and erasures while idle too
                    continue
                delivered = await self.handle_batch(good)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._finish(consumer, delivered, good))
            if pending is not None:
                await pending
                pending = None
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
            await self._close(consumer)

    async def _close(self, consumer: Any) -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consents.close()
        self.producer.flush(10)
        with contextlib.suppress(Exception):
            await self.rest.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        log.info("push sink stopped: %s", self.stats.line())

    @staticmethod
    def _poll_batch(consumer: Any) -> list[Message]:
        """Wait up to 100 ms for one record, then take whatever else is already fetched."""
        first = consumer.poll(0.1)
        if first is None:
            return []
        return [first, *consumer.consume(BATCH_MAX - 1, 0)]

    def _commit(self, consumer: Any, msgs: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = (str(m.topic()), int(m.partition() or 0))
            last[key] = max(last.get(key, -1), int(m.offset() or 0))
        offsets = [TopicPartition(topic, p, off + 1) for (topic, p), off in last.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            # A rebalance or broker restart: the batch will be redelivered and de-duplicated.
            log.warning("offset commit failed (batch will be redelivered): %s", exc)

    # -- one batch ------------------------------------------------------------------------------
    async def handle_batch(self, msgs: list[Message]) -> list[Offer]:
        """Apply check-ins and publish the batch's offers; returns the offers now on their
        shopper's channel (their follow-up is ``_finish``)."""
        self.stats.batches += 1
        await self.consents.apply(0)  # opt-outs and erasures seen so far, before pushing
        offers: dict[str, Offer] = {}
        for m in msgs:
            if m.topic() == t.KIOSK_INTERACTIONS.name:
                await self._kiosk(m)
            elif m.topic() == t.OFFERS.name:
                try:
                    offer = decode(Offer, m.value())
                except RecordError as exc:
                    self._dead(str(m.topic()), exc.reason, m.value(), m.partition(), m.offset())
                    continue
                offers.setdefault(offer.offer_id, offer)
        if not offers:
            return []
        return await self._offers(list(offers.values()))

    async def _finish(self, consumer: Any, delivered: list[Offer], msgs: list[Message]) -> None:
        """After publishing: ``delivered`` events (flushed), markers and counters, then commit."""
        ts = now_ms()
        for o in delivered:
            produce(
                self.producer,
                t.OFFER_EVENTS,
                OfferEvent(offer_id=o.offer_id, uid=o.uid, event="delivered", ts=ts),
            )
        await asyncio.to_thread(self._flush)

        async def mark() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for o in delivered:
                await self.mark(
                    keys=[
                        serving.delivered(o.offer_id),
                        serving.promo_stats(o.pid),
                        serving.store_stats(o.store_id),
                    ],
                    args=[str(ts), DELIVERED_MARKER_TTL_S],
                    client=pipe,
                )
            await pipe.execute()

        if delivered:
            await self.backoff.redis("redis mark delivered", mark)
        self.stats.published += len(delivered)
        self._commit(consumer, msgs)

    async def _kiosk(self, m: Message) -> None:
        try:
            event = decode(KioskInteraction, m.value())
        except RecordError as exc:
            self._dead(str(m.topic()), exc.reason, m.value(), m.partition(), m.offset())
            return
        change = routing.checkin_change(event)
        if change is None:
            return
        key = serving.checkin(change.uid)

        async def apply() -> None:
            if change.op == "set":
                await self.redis.set(key, change.value, ex=routing.CHECKIN_TTL_S)
                return
            current = await self.redis.get(key)
            if current is None or _text(current) != change.value:
                return
            if change.op == "clear":
                await self.redis.delete(key)
            else:
                await self.redis.expire(key, routing.CHECKIN_TTL_S)

        await self.backoff.redis("redis check-in", apply)
        self.stats.checkins += 1

    async def _lookup(self, offers: list[Offer]) -> tuple[list[Any], list[Any], list[Any]]:
        """Per offer: its delivered marker, its shopper's check-in and erased marker."""
        n = len(offers)
        secret = self.settings.shopper_secret

        async def lookup() -> tuple[list[Any], list[Any], list[Any]]:
            found = await self.redis.mget(
                [serving.delivered(o.offer_id) for o in offers]
                + [serving.checkin(o.uid) for o in offers]
                + [serving.erased(serving.pseudonym(secret, o.uid)) for o in offers]
            )
            return found[:n], found[n : 2 * n], found[2 * n :]

        return await self.backoff.redis("redis lookup", lookup)

    async def _offers(self, offers: list[Offer]) -> list[Offer]:
        self.stats.offers += len(offers)
        start = now_ms()
        for o in offers:
            self.stats.sample(self.stats.consumed_ms, start - o.ts)
        done, where, erased = await self._lookup(offers)
        if any(o.uid not in self.consents.view for o in offers):
            # A consent the sink has not applied yet (the offer was made after it): read the
            # consents up to now. Still none: no consent, no push.
            await self.consents.catch_up(CONSENT_CATCH_UP_S)
        todo = [o for o, d in zip(offers, done, strict=True) if d is None]
        self.stats.skipped_delivered += len(offers) - len(todo)
        if not todo:
            return []
        checkins = {o.uid: routing.parse_checkin(w) for o, w in zip(offers, where, strict=True)}
        payloads = {o.offer_id: o.model_dump(mode="json") for o in todo}
        sizes = {i: len(orjson.dumps(p)) for i, p in payloads.items()}
        # An erased shopper has no consent left: nothing is pushed to them, whatever is in flight.
        consents = {
            o.uid: frozenset() if e is not None else self.consents.view.get(o.uid)
            for o, e in zip(offers, erased, strict=True)
        }
        plan = routing.plan(todo, checkins, sizes, consents)
        self.stats.suppressed += len(plan.suppressed)
        for o in plan.oversize:
            self._dead(
                t.OFFERS.name,
                f"offer over Ably's {routing.MAX_MESSAGE_BYTES}-byte message limit",
                o.to_json(),
            )
        on_a_channel = await self._publish(plan, payloads)
        acked = now_ms()
        done_now = [o for o in todo if o.offer_id in on_a_channel]
        for o in done_now:
            self.stats.sample(self.stats.acked_ms, acked - o.ts)
        return done_now

    async def _publish(self, plan: routing.Plan, payloads: dict[str, Any]) -> set[str]:
        """Publish every chunk at once; returns the offers that at least one channel took (they
        are delivered); the chunks refused for good go to `dead_letters`."""
        results = await asyncio.gather(
            *(self.publisher.publish(ch, chunk, payloads) for ch, chunk in plan.chunks)
        )
        on_a_channel: set[str] = set()
        for (ch, chunk), err in zip(plan.chunks, results, strict=True):
            if err is None:
                on_a_channel.update(o.offer_id for o in chunk)
                continue
            for o in chunk:
                self._dead(
                    t.OFFERS.name,
                    f"ably publish to {ch.split(':')[0]} channel refused: {err}",
                    o.to_json(),
                )
        return on_a_channel

    # -- outputs --------------------------------------------------------------------------------
    def _dead(
        self,
        source: str,
        reason: str,
        raw: Any,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.stats.dead_letters += 1
        log.warning("dead letter from %s: %s", source, reason)
        produce(self.producer, t.DEAD_LETTERS, dead_letter(source, reason, raw, partition, offset))

    def _flush(self) -> None:
        deadline = time.monotonic() + 300
        while self.producer.flush(5) > 0:
            if time.monotonic() > deadline:
                msg = "could not deliver offer_events/dead_letters to Kafka for 5 minutes"
                raise RuntimeError(msg)
            log.warning("waiting for Kafka to take offer_events/dead_letters")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def run_sink(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM."""
    import signal  # noqa: PLC0415

    sink = PushSink(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sink.stop)
        await sink.run()

    asyncio.run(main())
