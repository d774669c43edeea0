"""The worker's core: a batch of input records in, everything the batch derives out. Pure.

``ProximityProcessor.process`` turns a batch of position records into NEARBY_CUSTOMERS rows,
offers (the policy applied inline), dead letters, live-map positions, dwell seconds, NEARBY
counts per promotion and verdict counts; ``PolicyProcessor.process`` turns NEARBY_CUSTOMERS
rows computed by another engine (ksqlDB) into offers. Neither sends, writes or awaits
anything: the Faust agents around them (stream_apps/app.py) produce the outputs, write the
serving store and acknowledge the inputs, and the tests feed them plain lists
(tests/unit/test_processor.py).

The policy state they share (``Shoppers``) is kept in memory, over a durable table that gets a
shopper's state only when an offer is made: the cooldown and hourly cap must survive a
restart, a dwell episode need not (see ``ShopperState.offered``). Writing every episode start
made the changelog ~5x longer, and a restarted worker replays all of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from instore import topics as t
from instore.geo import GeoError
from instore.proximity import ProximityState, UnknownStore
from instore.records import (
    CustomerLocation,
    DeadLetter,
    NearbyCustomer,
    Offer,
    RecordError,
    ShopperConsent,
    dead_letter,
    decode,
)
from stream_apps.analytics import DwellTracker
from stream_apps.policy import PolicyConfig, ShopperState, decide, decide_position

# A live-map position: (uid, store_id, latitude, longitude, ts)
# Dwell episodes a shopper's live state holds before it is pruned (see Shoppers.save).
PRUNE_AT = 64
LivePosition = tuple[str, str, float, float, int]


class InputRecord(Protocol):
    """What the processors read of a consumed record (a Faust/aiokafka message has these)."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> float: ...  # seconds


@dataclass(slots=True)
class Derived:
    """What one batch derives. ``rows`` are ``(key, hits, ts)`` per position: each hit's last
    element is the NEARBY_CUSTOMERS row's JSON (``Output.send_rows`` sends them in order)."""

    rows: list[tuple[bytes, list[Any], int]] = field(default_factory=list)
    offers: list[Offer] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    live: list[LivePosition] = field(default_factory=list)
    per_promo: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pid, store_id) -> rows
    dwell: dict[tuple[int, str], float] = field(default_factory=dict)  # (bucket, store:sku) -> s
    counts: Counter[str] = field(default_factory=Counter)
    last_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset seen


class Shoppers:
    """The policy state per shopper as the processors run it: a live map over ``table`` (the
    worker's changelogged Faust table, any mutable mapping in tests). ``consents`` is the
    current consent per uid: a shopper without one (erased, or never opted in) keeps nothing."""

    def __init__(self, table: MutableMapping[str, Any], consents: Mapping[str, ShopperConsent],
                 cfg: PolicyConfig) -> None:
        self.table = table
        self.consents = consents
        self.cfg = cfg
        self.live: dict[str, ShopperState] = {}
        self.generation: int | None = None

    def begin(self, generation: int) -> None:
        """Start a batch taken in consumer ``generation``: the live map is dropped on every
        rebalance (a shopper whose partition went elsewhere and came back is read from the
        table again)."""
        if generation != self.generation:
            self.live.clear()
            self.generation = generation

    def get(self, uid: str, touched: dict[str, ShopperState]) -> ShopperState:
        """The state of ``uid`` for this batch (recorded in ``touched`` for :meth:`save`)."""
        shopper = touched.get(uid)
        if shopper is None:
            shopper = self.live.get(uid)
            if shopper is None:
                shopper = ShopperState.from_dict(self.table.get(uid))
            touched[uid] = shopper
        return shopper

    def known(self, uid: str) -> bool:
        return uid in self.live or self.table.get(uid) is not None

    def save(self, touched: dict[str, ShopperState]) -> None:
        """Keep what a batch changed: pruned, in the table when an offer was made; in the
        live map while it has episodes or cooldowns; nothing for a shopper without consent.
        The live state is pruned only once it holds more than ``PRUNE_AT`` episodes (an
        episode past the gap, or a cooldown past its end, decides nothing: ``decide`` reads
        them as absent), not at every new episode: that was a twentieth of the worker's loop."""
        for uid, shopper in touched.items():
            if self.consents.get(uid) is None:
                self.live.pop(uid, None)
                if self.table.get(uid) is not None:
                    self.table.pop(uid, None)  # erased or never opted in: keep nothing
                continue
            if shopper.offered or (shopper.changed and len(shopper.near) > PRUNE_AT):
                shopper.prune(shopper.newest(), self.cfg)
                shopper.changed = False
            if shopper.offered:  # kept pruned (above)
                shopper.offered = False
                self.table[uid] = shopper.to_dict()
            if shopper.near or shopper.last_offer:
                self.live[uid] = shopper
            else:
                self.live.pop(uid, None)

    def prune(self) -> None:
        """Forget the live state of shoppers not seen for a while (their cooldowns are in the
        table) and of shoppers whose consent is gone."""
        newest = {uid: shopper.newest() for uid, shopper in self.live.items()}
        now = max(newest.values(), default=0)
        horizon = self.cfg.gap_ms + 60_000
        for uid, seen in newest.items():
            if self.consents.get(uid) is None or now - seen > horizon:  # erased, or gone quiet
                del self.live[uid]


_PID_STORE = itemgetter(1, 0)  # a hit's (pid, store_id)


def _dead(out: Derived, source: str, error: str, msg: InputRecord) -> None:
    out.dead_letters.append(dead_letter(source, error, msg.value, msg.partition, msg.offset))


class ProximityProcessor:
    """Positions -> NEARBY rows and, in the same pass, offers (when ``shoppers`` is given:
    the worker that computes the rows also applies the policy, as reading ~20 rows per position
    back through Faust would cost several times the matching) and dwell (when ``dwell`` is
    given). ``naive`` matches by scanning every promotion instead of the grid index.

    With ``per_promo`` given, the NEARBY counts per (pid, store_id) add up there across batches
    (each batch's ``Derived.per_promo`` is that counter; the caller takes the counts when it
    writes them): merging a batch's counts into running ones was a twentieth of the worker's
    loop."""

    def __init__(self, state: ProximityState, consents: Mapping[str, ShopperConsent],
                 shoppers: Shoppers | None, dwell: DwellTracker | None, naive: bool = False,
                 per_promo: Counter[tuple[str, str]] | None = None) -> None:
        self.state = state
        self.per_promo = per_promo
        self.consents = consents
        self.shoppers = shoppers
        self.dwell = dwell
        self.naive = naive
        self.match = state.match_hits_naive if naive else state.match_hits

    def process(self, records: Sequence[InputRecord], generation: int = 0) -> Derived:
        out = Derived()
        if self.per_promo is not None:
            out.per_promo = self.per_promo
        if self.shoppers is not None:
            self.shoppers.begin(generation)
        touched: dict[str, ShopperState] = {}
        newest = positions = 0
        for msg in records:
            out.last_offsets[msg.partition] = msg.offset
            pos = self._decode(msg, out)
            if pos is None:
                continue
            position, ts, hits = pos
            positions += 1
            newest = max(newest, ts)
            self._derive(position, ts, hits, touched, out)
        if touched and self.shoppers is not None:
            self.shoppers.save(touched)
        if self.dwell is not None and newest:
            self.dwell.prune(newest)
        counts = out.counts
        counts["positions"] += positions
        counts["nearby"] += sum(len(hits) for _, hits, _ in out.rows)
        counts["offers"] += len(out.offers)
        counts["proximity_batches"] += 1
        return out

    def _decode(self, msg: InputRecord, out: Derived
                ) -> tuple[CustomerLocation, int, list[Any]] | None:
        """The position and its matches, or None (dead-lettered, or outside every store)."""
        source = t.CUSTOMERS_LOCATIONS.name
        try:
            pos = decode(CustomerLocation, msg.value)
        except RecordError as exc:
            _dead(out, source, exc.reason, msg)
            return None
        ts = pos.ts if pos.ts is not None else int(msg.timestamp * 1000)
        try:
            return pos, ts, self.match(pos, ts)
        except UnknownStore as exc:
            if pos.store_id is None:
                out.counts["outside_stores"] += 1
            else:
                _dead(out, source, str(exc), msg)
        except GeoError as exc:
            _dead(out, source, f"invalid position: {exc}", msg)
        return None

    def _derive(self, pos: CustomerLocation, ts: int, hits: list[Any],
                touched: dict[str, ShopperState], out: Derived) -> None:
        """One decoded position's rows, dwell, offers and live-map entry."""
        uid = pos.uid
        consent = self.consents.get(uid)
        opted_in = consent is not None and consent.opted_in
        if hits:
            out.rows.append((uid.encode(), hits, ts))
            out.per_promo.update(map(_PID_STORE, hits))  # counted in C
            if self.dwell is not None:
                self._add_dwell(uid, hits, ts, out.dwell)
            shoppers = self.shoppers
            if shoppers is not None:
                if opted_in:
                    out.offers += decide_position(uid, hits, ts, shoppers.get(uid, touched),
                                                  self.state.promotions, shoppers.cfg, out.counts)
                else:
                    out.counts["policy:no_consent"] += len(hits)
                    if consent is None and uid not in touched and shoppers.known(uid):
                        touched[uid] = ShopperState()  # erased: dropped by Shoppers.save
        if opted_in and (pos.store_id or hits):
            # Only opted-in shoppers appear on the live floor map (an erased or anonymous
            # shopper's uid never lands in the serving store).
            store_id = pos.store_id or self.state.resolve_store(pos)
            out.live.append((uid, store_id, pos.latitude, pos.longitude, ts))

    def _add_dwell(self, uid: str, hits: list[Any], ts: int,
                   sums: MutableMapping[tuple[int, str], float]) -> None:
        assert self.dwell is not None
        if self.naive:  # the country scan's rows may name several stores
            for h in hits:
                self.dwell.add(uid, h[0], h[2], ts, sums)
        else:
            self.dwell.add_position(uid, hits[0][0], [h[2] for h in hits], ts, sums)


class PolicyProcessor:
    """NEARBY_CUSTOMERS rows computed by another engine -> offers, the same rule as inline
    (``per_promo`` as for :class:`ProximityProcessor`)."""

    def __init__(self, state: ProximityState, shoppers: Shoppers,
                 per_promo: Counter[tuple[str, str]] | None = None) -> None:
        self.state = state
        self.shoppers = shoppers
        self.per_promo = per_promo

    def process(self, records: Sequence[InputRecord], generation: int = 0) -> Derived:
        out = Derived()
        if self.per_promo is not None:
            out.per_promo = self.per_promo
        shoppers = self.shoppers
        shoppers.begin(generation)
        touched: dict[str, ShopperState] = {}
        counts = out.counts
        for msg in records:
            out.last_offsets[msg.partition] = msg.offset
            try:
                row = decode(NearbyCustomer, msg.value)
            except RecordError as exc:
                _dead(out, t.NEARBY_CUSTOMERS.name, exc.reason, msg)
                continue
            out.per_promo[(row.pid, row.store_id)] += 1
            counts["nearby"] += 1
            verdict, offer = decide(row, shoppers.get(row.uid, touched),
                                    shoppers.consents.get(row.uid),
                                    self.state.promotions.get(row.pid), shoppers.cfg)
            counts[f"policy:{verdict}"] += 1
            if offer is not None:
                out.offers.append(offer)
        shoppers.save(touched)
        counts["offers"] += len(out.offers)
        return out
