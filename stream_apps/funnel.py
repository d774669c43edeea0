"""The offers funnel, one definition: a stage counts the offers that reached it **or a later
one**, so delivered >= opened >= redeemed whatever order ``offer_events`` arrive in and however
often they are redelivered. An offer redeemed with no recorded delivery (the phone fetched it
from the API before the push, a lost ``delivered`` event) counts as delivered and opened too.

The daily reports (``stream_apps/reports/figures.py``) compute the same definition in DuckDB
over the archive; the live counters in the serving store are kept by the ``funnel`` agent
below, the only writer of the ``serving.reached(stage)`` fields. It reads ``offer_events`` (so
every producer of an event, the push sink, the API, a till, is counted the same way), looks the
offer up in the serving store for its promotion and store, and runs ``COUNT_REACHED`` in Redis:
one idempotency mark per offer and stage, set and counted atomically.

``stages_to_count`` is the pure rule; the Lua script is the same rule in Redis (an integration
test runs both over the same random event orders).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

import orjson

from instore import serving
from instore import topics as t
from instore.records import OfferEvent, RecordError, decode
from instore.settings import Settings

log = logging.getLogger(__name__)

Stage = Literal["delivered", "opened", "redeemed"]
STAGES: tuple[Stage, ...] = ("delivered", "opened", "redeemed")  # funnel order
MARK_TTL_S = 30 * 24 * 3600  # an offer's marks outlive any redelivery of its events


def stages_to_count(event: str, counted: Iterable[str]) -> tuple[Stage, ...]:
    """The stages to count now for one offer, given the event just seen and the stages
    already counted for that offer: the event's stage and every earlier one, minus those
    counted. An unknown event counts nothing."""
    if event not in STAGES:
        return ()
    done = set(counted)
    return tuple(s for s in STAGES[: STAGES.index(event) + 1] if s not in done)  # type: ignore[arg-type]


def funnel_of_events(events: Iterable[tuple[str, str]]) -> dict[Stage, int]:
    """Stage counts after applying ``stages_to_count`` to (offer_id, event) pairs in order
    (what the counters in Redis hold after the same events)."""
    counted: dict[str, set[str]] = {}
    totals: Counter[Stage] = Counter()
    for offer_id, event in events:
        done = counted.setdefault(offer_id, set())
        for stage in stages_to_count(event, done):
            done.add(stage)
            totals[stage] += 1
    return {s: totals[s] for s in STAGES}


# KEYS: the offer's marks for each stage (STAGES order), then the hashes to count into.
# ARGV: the event's stage number (1-based; 0 counts nothing), the marks' TTL, then the hash
# field of each stage (STAGES order). Returns how many stages were counted.
COUNT_REACHED = """
local stages = #ARGV - 2
local upto = tonumber(ARGV[1])
local counted = 0
for i = 1, math.min(upto, stages) do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[2]) then
    for h = stages + 1, #KEYS do
      redis.call('HINCRBY', KEYS[h], ARGV[2 + i], 1)
    end
    counted = counted + 1
  end
end
return counted
"""


def mark_key(offer_id: str, stage: str) -> str:
    return serving.offer_event_mark(offer_id, f"funnel-{stage}")


def script_args(offer_id: str, event: str, hashes: list[str]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``COUNT_REACHED`` for one event of one offer."""
    upto = STAGES.index(event) + 1 if event in STAGES else 0  # type: ignore[arg-type]
    keys = [mark_key(offer_id, s) for s in STAGES] + hashes
    return keys, [upto, MARK_TTL_S, *(serving.reached(s) for s in STAGES)]


def hashes_of(offer: dict[str, Any]) -> list[str]:
    """The counters one offer's stages are counted into: its promotion's, its store's, the
    totals."""
    return [serving.promo_stats(str(offer["pid"])), serving.store_stats(str(offer["store_id"])),
            serving.totals()]


def agents(app: Any, settings: Settings) -> None:
    """Register the ``funnel`` agent on the worker's Faust app (with the analytics agents)."""
    import redis.asyncio as aioredis  # noqa: PLC0415
    from redis.exceptions import RedisError  # noqa: PLC0415

    rds = aioredis.Redis.from_url(settings.redis_address, socket_timeout=2,
                                  socket_connect_timeout=2)
    count = rds.register_script(COUNT_REACHED)
    events_topic = app.topic(t.OFFER_EVENTS.name, value_serializer="raw", key_serializer="raw")
    errors: Counter[str] = Counter()

    @app.agent(events_topic, name="funnel")
    async def funnel(stream: Any) -> None:
        async for values in stream.take(settings.worker_batch,
                                        within=settings.worker_batch_within_s):
            events = []
            for raw in values:
                try:
                    events.append(decode(OfferEvent, raw))
                except RecordError:
                    continue  # dead-lettered by the archiver's quality counts, not ours
            if not events:
                continue
            try:
                offers = await rds.mget([serving.offer(e.offer_id) for e in events])
                pipe = rds.pipeline(transaction=False)
                queued = 0
                for event, offer_raw in zip(events, offers, strict=True):
                    if offer_raw is None:
                        errors["unknown offer"] += 1  # expired from the serving store
                        continue
                    keys, args = script_args(event.offer_id, event.event,
                                             hashes_of(orjson.loads(offer_raw)))
                    await count(keys=keys, args=args, client=pipe)
                    queued += 1
                if queued:
                    await pipe.execute()
            except (RedisError, OSError, orjson.JSONDecodeError) as exc:
                errors["redis"] += 1
                if errors["redis"] % 100 == 1:
                    log.warning("funnel: serving store unavailable (%s), %d batches lost",
                                type(exc).__name__, errors["redis"])
