"""Kiosk sessions: a shopper checks in at a kiosk near the entrance, views and taps products,
and checks out a few minutes later. Same seed -> same sessions."""

from __future__ import annotations

import random
from collections.abc import Iterator

from instore.records import KioskInteraction
from producers.world import World


def kiosk_ids(world: World, per_store: int = 2) -> list[tuple[str, str]]:
    return [(s.store_id, f"kiosk-{k + 1}") for s in world.stores for k in range(per_store)]


def kiosk_sessions(world: World, uids: list[str], *, seed: int = 7, start_ms: int = 0,
                   per_store: int = 2) -> Iterator[KioskInteraction]:
    """One session per uid (check in, 1-4 views/taps of promoted products, check out)."""
    rng = random.Random(seed)
    kiosks = kiosk_ids(world, per_store)
    promoted = world.promoted_skus or [1]
    events: list[KioskInteraction] = []
    for i, uid in enumerate(uids):
        store_id, kiosk_id = kiosks[i % len(kiosks)]
        t = start_ms + int(rng.uniform(0, 20_000))
        events.append(KioskInteraction(store_id=store_id, kiosk_id=kiosk_id, uid=uid,
                                       action="checkin", sku=None, ts=t))
        for _ in range(rng.randint(1, 4)):
            t += int(rng.uniform(2_000, 15_000))
            events.append(KioskInteraction(store_id=store_id, kiosk_id=kiosk_id, uid=uid,
                                           action=rng.choice(("view", "tap")),
                                           sku=rng.choice(promoted), ts=t))
        t += int(rng.uniform(60_000, 300_000))
        events.append(KioskInteraction(store_id=store_id, kiosk_id=kiosk_id, uid=uid,
                                       action="checkout", sku=None, ts=t))
    yield from sorted(events, key=lambda e: e.ts)
