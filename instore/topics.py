"""The topic contract: every topic's name, key, partitioning, cleanup and record type.

Every part imports topics from here; nobody spells a topic name of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from instore import records as r

STREAM_RETENTION_MS = 24 * 3600 * 1000  # Settings.stream_retention_ms's default
COMPACTION_MS = 600_000  # Settings.compaction_ms's default (Confluent Cloud's least segment.ms)
SEGMENT_MS = 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    record: type[r.Record]
    key_fields: tuple[str, ...]
    compacted: bool = False
    partitions: int | None = None  # None = the configured default (settings.kafka_partitions)
    description: str = ""

    @property
    def kind(self) -> str:
        return "table" if self.compacted else "stream"

    def key_of(self, record: r.Record | dict[str, Any]) -> str | None:
        data = record if isinstance(record, dict) else record.model_dump()
        if not self.key_fields:
            return None
        return ":".join(str(data[f]) for f in self.key_fields)

    def config(self, *, retention_ms: int = STREAM_RETENTION_MS,
               compaction_ms: int = COMPACTION_MS) -> dict[str, str]:
        """The topic's Kafka config (the embedded broker's and Terraform's).

        A stream keeps a record ``retention_ms``; segments roll at least hourly (or at the
        retention, if shorter), so a record is deleted within retention + one segment + the
        broker's retention check. A compacted table rolls its segment after ``compaction_ms``
        (on the next write), compacts a segment at most ``compaction_ms`` after it was written
        (``max.compaction.lag.ms``, whatever the dirty ratio) and keeps a tombstone
        ``compaction_ms`` after that for readers catching up: superseded records and
        tombstones are gone within about three times ``compaction_ms``.
        """
        if self.compacted:
            return {
                "cleanup.policy": "compact",
                "segment.ms": str(compaction_ms),
                "max.compaction.lag.ms": str(compaction_ms),
                "min.compaction.lag.ms": "0",
                "delete.retention.ms": str(compaction_ms),
            }
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "segment.ms": str(min(retention_ms, SEGMENT_MS)),
        }


CUSTOMERS_LOCATIONS = Topic(
    "customers_locations", r.CustomerLocation, ("uid",),
    description="where each shopper stands (camera, phone or simulator)",
)
STORES_PRODUCTS = Topic(
    "stores_products", r.StoreProduct, ("store_id", "sku"), compacted=True,
    description="the catalog: every product's place on the floor",
)
PRODUCTS_PROMOTIONS = Topic(
    "products_promotions", r.Promotion, ("pid",), compacted=True,
    description="the marketers' promotions; tombstone = withdrawn",
)
KIOSK_INTERACTIONS = Topic(
    "kiosk_interactions", r.KioskInteraction, ("store_id", "kiosk_id"),
    description="check-ins, views, taps and scans at kiosks",
)
SHOPPER_CONSENTS = Topic(
    "shopper_consents", r.ShopperConsent, ("uid",), compacted=True,
    description="opt in/out per shopper; tombstone = erased",
)
NEARBY_CUSTOMERS = Topic(
    "NEARBY_CUSTOMERS", r.NearbyCustomer, ("uid",),
    description="a shopper near a promoted product (the proximity rule)",
)
OFFERS = Topic(
    "offers", r.Offer, ("uid",),
    description="what the policy decided to tell a shopper",
)
OFFER_EVENTS = Topic(
    "offer_events", r.OfferEvent, ("offer_id",),
    description="delivered / opened / redeemed",
)
DEAD_LETTERS = Topic(
    "dead_letters", r.DeadLetter, (), partitions=1,
    description="anything that failed validation, with the reason",
)

ALL: tuple[Topic, ...] = (
    CUSTOMERS_LOCATIONS,
    STORES_PRODUCTS,
    PRODUCTS_PROMOTIONS,
    KIOSK_INTERACTIONS,
    SHOPPER_CONSENTS,
    NEARBY_CUSTOMERS,
    OFFERS,
    OFFER_EVENTS,
    DEAD_LETTERS,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL}


RETENTION_CHECK_MS = 300_000  # Kafka's default log.retention.check.interval.ms (embedded: 30 s)


def compacted_within_ms(compaction_ms: int) -> int:
    """Bound on how long a superseded record or a tombstone stays in a compacted table: the
    segment rolls (``segment.ms``), the cleaner takes it (``max.compaction.lag.ms``), and a
    tombstone is kept ``delete.retention.ms`` more (see ``Topic.config``). Assumes the table
    gets a write after the segment's time is up (a segment rolls only on a write)."""
    return 3 * compaction_ms


def stream_expiry_within_ms(retention_ms: int) -> int:
    """Bound on how long a stream record lives: retention, plus the segment it sits in (which is
    deleted whole once its newest record is past retention), plus the broker's retention check."""
    return retention_ms + min(retention_ms, SEGMENT_MS) + RETENTION_CHECK_MS


def partitions_of(topic: Topic, default: int) -> int:
    return topic.partitions if topic.partitions is not None else default


KeyFn = Callable[[r.Record], str | None]
