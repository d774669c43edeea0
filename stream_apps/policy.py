"""The offer policy: from "near" to "worth telling". Pure: no I/O, state passed in and out.

Consent (opted in, not erased), dwell (near the same promotion continuously for ``dwell_s``),
cooldown per (uid, pid), a cap per shopper per hour, and a stable ``offer_id`` =
hash(uid, pid, cooldown window) so a replay after a restart yields the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from instore.records import MAX_EPOCH_MS, NearbyCustomer, Offer, Promotion, ShopperConsent

HOUR_MS = 3_600_000


class Near(NamedTuple):
    """The fields of a NEARBY_CUSTOMERS row the policy reads (the worker computing the rows
    itself hands them over without a round trip through the topic)."""

    uid: str
    store_id: str
    pid: str
    sku: int
    distance_ft: float
    ts: int


@dataclass(frozen=True)
class PolicyConfig:
    dwell_s: float = 5.0
    dwell_gap_s: float = 5.0
    cooldown_s: float = 1800.0
    cap_per_hour: int = 3
    offer_ttl_s: float = 900.0

    # Read for every position (cached: the dataclass is frozen).
    @cached_property
    def dwell_ms(self) -> int:
        return int(self.dwell_s * 1000)

    @cached_property
    def gap_ms(self) -> int:
        return int(self.dwell_gap_s * 1000)

    @cached_property
    def cooldown_ms(self) -> int:
        return max(1, int(self.cooldown_s * 1000))


@dataclass
class ShopperState:
    """Per shopper: dwell episodes per promotion, last offer per promotion, offers this hour."""

    # pid -> (first_ts, last_ts). Tuples of ints, not lists: the garbage collector stops
    # tracking them (and then the dicts holding only them), so a full collection does not walk
    # every episode of every shopper (lists made the worker's full collections ~140 ms).
    near: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_offer: dict[str, int] = field(default_factory=dict)  # pid -> ts
    recent: list[int] = field(default_factory=list)  # offer ts within the last hour
    # Set when a dwell episode starts or an offer is made (the episodes need pruning).
    changed: bool = field(default=False, compare=False)
    # Set when an offer is made: what must survive a restart (the cooldown and the hourly cap).
    # Dwell episodes live only in the worker's memory: after a restart a shopper already at a
    # shelf dwells again before an offer (an offer later, never a second one).
    offered: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A snapshot (copies: the table's value must not change with the live state)."""
        return {"near": dict(self.near), "last_offer": dict(self.last_offer),
                "recent": list(self.recent)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ShopperState:
        if not data:
            return cls()
        return cls(
            near={k: (int(v[0]), int(v[1])) for k, v in data.get("near", {}).items()},
            last_offer=dict(data.get("last_offer", {})),
            recent=list(data.get("recent", [])),
        )

    def newest(self) -> int:
        """The latest time this state knows of (last seen near a promotion, or an offer)."""
        return max([v[1] for v in self.near.values()] + self.recent + [0])

    def prune(self, now_ts: int, cfg: PolicyConfig) -> None:
        self.near = {k: v for k, v in self.near.items() if now_ts - v[1] <= cfg.gap_ms}
        self.last_offer = {k: v for k, v in self.last_offer.items() if now_ts - v < cfg.cooldown_ms}
        self.recent = [x for x in self.recent if now_ts - x < HOUR_MS]


def offer_id_for(uid: str, pid: str, ts: int, cfg: PolicyConfig) -> str:
    window = ts // cfg.cooldown_ms
    return hashlib.sha256(f"{uid}|{pid}|{window}".encode()).hexdigest()[:24]


def consented(consent: ShopperConsent | None) -> bool:
    return consent is not None and consent.opted_in


Decision = str  # "offer" or why not: "no_consent", "dwelling", "cooldown", "cap", "withdrawn", ...


def decide(
    row: NearbyCustomer | Near,
    state: ShopperState,
    consent: ShopperConsent | None,
    promotion: Promotion | None,
    cfg: PolicyConfig,
) -> tuple[Decision, Offer | None]:
    """Update ``state`` with this NEARBY row and say whether it earns an offer now."""
    ts = row.ts
    if promotion is None:
        return "withdrawn", None
    if not promotion.active_at(ts):
        return "inactive", None
    if not consented(consent):
        return "no_consent", None
    episode = state.near.get(row.pid)
    if episode is None or ts - episode[1] > cfg.gap_ms:
        episode = state.near[row.pid] = (ts, ts)
        state.changed = True
    elif ts > episode[1]:
        episode = state.near[row.pid] = (episode[0], ts)
    if ts - episode[0] < cfg.dwell_ms:
        return "dwelling", None
    last = state.last_offer.get(row.pid)
    if last is not None and ts - last < cfg.cooldown_ms:
        return "cooldown", None
    state.recent = [x for x in state.recent if ts - x < HOUR_MS]
    if len(state.recent) >= cfg.cap_per_hour:
        return "cap", None
    state.last_offer[row.pid] = ts
    state.recent.append(ts)
    state.changed = True
    state.offered = True
    return "offer", _offer(row.uid, row.store_id, row.pid, row.sku, row.distance_ft, ts,
                           promotion, cfg)


def _offer(uid: str, store_id: str, pid: str, sku: int, distance_ft: float, ts: int,
           promotion: Promotion, cfg: PolicyConfig) -> Offer:
    return Offer(
        offer_id=offer_id_for(uid, pid, ts, cfg), uid=uid, store_id=store_id, pid=pid, sku=sku,
        title=promotion.title, discount_pct=promotion.discount_pct,
        distance_ft=round(distance_ft, 1), ts=ts,
        # capped at the latest time a record may carry (a year-3000 ts must not crash the agent)
        expires_at=min(ts + int(cfg.offer_ttl_s * 1000), MAX_EPOCH_MS),
    )


def decide_position(
    uid: str,
    hits: Sequence[tuple[str, str, int, float, Any]],
    ts: int,
    state: ShopperState,
    promotions: Mapping[str, Promotion],
    cfg: PolicyConfig,
    verdicts: MutableMapping[str, int],
) -> list[Offer]:
    """``decide`` for every match of one position of an opted-in shopper, in one pass (the
    worker's hot path): the same decisions, row by row, in the same order. ``hits`` are
    ``(store_id, pid, sku, distance_ft, ...)`` of promotions active at ``ts`` (the spatial
    index only yields those); verdict counts are added to ``verdicts``."""
    near, last_offer = state.near, state.last_offer
    gap_ms, dwell_ms, cooldown_ms, cap = cfg.gap_ms, cfg.dwell_ms, cfg.cooldown_ms, cfg.cap_per_hour
    recent = state.recent = [x for x in state.recent if ts - x < HOUR_MS]
    offers: list[Offer] = []
    withdrawn = dwelling = cooldown = capped = 0
    for hit in hits:
        pid = hit[1]
        promotion = promotions.get(pid)
        if promotion is None:
            withdrawn += 1
            continue
        episode = near.get(pid)
        if episode is None or ts - episode[1] > gap_ms:
            near[pid] = episode = (ts, ts)
            state.changed = True
        elif ts > episode[1]:
            near[pid] = episode = (episode[0], ts)
        if ts - episode[0] < dwell_ms:
            dwelling += 1
            continue
        last = last_offer.get(pid)
        if last is not None and ts - last < cooldown_ms:
            cooldown += 1
            continue
        if len(recent) >= cap:
            capped += 1
            continue
        last_offer[pid] = ts
        recent.append(ts)
        state.changed = True
        state.offered = True
        offers.append(_offer(uid, hit[0], pid, hit[2], hit[3], ts, promotion, cfg))
    for name, n in (("withdrawn", withdrawn), ("dwelling", dwelling), ("cooldown", cooldown),
                    ("cap", capped), ("offer", len(offers))):
        if n:
            verdicts[f"policy:{name}"] = verdicts.get(f"policy:{name}", 0) + n
    return offers
