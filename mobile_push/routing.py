"""Pure rules of the push sink: what a kiosk interaction does to a check-in, which channels an
offer goes to (their names are ``instore.channels``'), how a batch of offers becomes
per-channel publishes, and which Ably errors are worth a retry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from instore.channels import kiosk_channel, shopper_channel
from instore.records import KioskInteraction, Offer

MESSAGE_NAME = "offer"
MAX_MESSAGE_BYTES = 65_536  # Ably's default per-message limit
MAX_BATCH_BYTES = 60_000  # keep one batched publish under the limit with room for the envelope
CHECKIN_TTL_S = 3600


def parse_checkin(value: str | bytes | None) -> tuple[str, str] | None:
    """Redis check-in value ``store_id:kiosk_id`` -> (store_id, kiosk_id)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    store_id, sep, kiosk_id = text.rpartition(":")
    if not sep or not store_id or not kiosk_id:
        return None
    return store_id, kiosk_id


@dataclass(frozen=True)
class CheckinChange:
    """What a kiosk interaction does to ``serving.checkin(uid)``."""

    uid: str
    op: str  # "set" (check in / refresh at this kiosk) | "clear" (check out if here)
    value: str


def checkin_change(event: KioskInteraction) -> CheckinChange | None:
    if not event.uid:
        return None
    value = f"{event.store_id}:{event.kiosk_id}"
    if event.action == "checkout":
        return CheckinChange(event.uid, "clear", value)
    if event.action == "checkin":
        return CheckinChange(event.uid, "set", value)
    return CheckinChange(event.uid, "touch", value)  # view/tap/scan keep the session alive


def parse_consent_channels(value: str | bytes | None) -> frozenset[str] | None:
    """None = no consent seen by the sink (then nothing is pushed); otherwise the consented
    channels (empty = opted out since the offer was made)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    return frozenset(c for c in text.split(",") if c)


@dataclass
class Plan:
    """Per-channel chunks of offers to publish, and offers refused before publishing."""

    chunks: list[tuple[str, list[Offer]]] = field(default_factory=list)
    oversize: list[Offer] = field(default_factory=list)
    suppressed: list[Offer] = field(default_factory=list)  # no channel the shopper allows


def plan(
    offers: Iterable[Offer],
    checkins: dict[str, tuple[str, str] | None],
    size_of: dict[str, int],
    consents: dict[str, frozenset[str] | None] | None = None,
) -> Plan:
    """Group offers by channel (the shopper's own if they allow "phone", plus the kiosk they are
    checked in at in the offer's store if they allow "kiosk"), in input order, in chunks that
    stay under one publish's size limit."""
    out = Plan()
    by_channel: dict[str, list[list[Offer]]] = {}
    bytes_in_chunk: dict[str, int] = {}
    for offer in offers:
        size = size_of[offer.offer_id]
        if size > MAX_MESSAGE_BYTES:
            out.oversize.append(offer)
            continue
        allowed = (consents or {}).get(offer.uid) or frozenset()  # no consent, no push
        channels = []
        if "phone" in allowed:
            channels.append(shopper_channel(offer.uid))
        where = checkins.get(offer.uid)
        if (
            where is not None
            and where[0] == offer.store_id
            and "kiosk" in allowed
        ):
            channels.append(kiosk_channel(*where))
        if not channels:
            out.suppressed.append(offer)
            continue
        for ch in channels:
            chunks = by_channel.setdefault(ch, [[]])
            if chunks[-1] and bytes_in_chunk.get(ch, 0) + size > MAX_BATCH_BYTES:
                chunks.append([])
                bytes_in_chunk[ch] = 0
            chunks[-1].append(offer)
            bytes_in_chunk[ch] = bytes_in_chunk.get(ch, 0) + size
    for ch, chunks in by_channel.items():
        out.chunks.extend((ch, c) for c in chunks if c)
    return out


def is_permanent(status_code: int | None, code: int | None) -> bool:
    """An Ably error that the same request would hit again (bad request, forbidden, too big).

    401 is not permanent for a message: it is the sink's credentials, and the SDK renews
    tokens itself; retrying keeps the offer instead of dead-lettering every one of them."""
    if code in (40009, 40012, 40160, 40003, 40000):
        return True
    return status_code is not None and status_code in (400, 403, 404, 413, 422)
