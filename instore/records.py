"""One typed record per topic of the contract (DESIGN.md "The topic contract").

JSON on the wire with the seed demo's field names. ``decode`` turns raw bytes into a record or
raises ``RecordError`` with a reason a dead letter can carry.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from instore.errors import InstoreError

Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
MAX_EPOCH_MS = 32_503_680_000_000  # the latest time a record or a query may name: year 3000
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]
Uid = Annotated[str, Field(min_length=1, max_length=128)]
ShortText = Annotated[str, Field(min_length=1, max_length=256)]
Channel = Literal["phone", "kiosk"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=False)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class CustomerLocation(Record):
    """`customers_locations`, key ``uid``."""

    uid: Uid
    store_id: ShortText | None = None
    latitude: Latitude
    longitude: Longitude
    country: str | None = None
    ts: EpochMs | None = None
    source: Literal["camera", "phone", "sim"] = "sim"
    accuracy_m: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class StoreProduct(Record):
    """`stores_products`, compacted, key ``store_id:sku``."""

    sku: Annotated[int, Field(ge=0)]
    store_id: ShortText
    segment: ShortText
    variant: str | None = None
    name: ShortText
    latitude: Latitude
    longitude: Longitude
    country: str | None = None


class Promotion(Record):
    """`products_promotions`, compacted, key ``pid``; tombstone = withdrawn."""

    pid: ShortText
    sku: Annotated[int, Field(ge=0)] | None = None
    segment: ShortText | None = None
    title: ShortText
    discount_pct: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
    radius_ft: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] = 100.0
    starts_at: EpochMs | None = None
    ends_at: EpochMs | None = None

    @model_validator(mode="after")
    def _target_and_schedule(self) -> Promotion:
        if self.sku is None and self.segment is None:
            msg = "a promotion needs a sku or a segment"
            raise ValueError(msg)
        if self.starts_at is not None and self.ends_at is not None and self.starts_at >= self.ends_at:
            msg = "starts_at must be before ends_at"
            raise ValueError(msg)
        return self

    def active_at(self, t: int) -> bool:
        return (self.starts_at is None or self.starts_at <= t) and (
            self.ends_at is None or t < self.ends_at
        )


class KioskInteraction(Record):
    """`kiosk_interactions`, key ``store_id:kiosk_id``."""

    store_id: ShortText
    kiosk_id: ShortText
    uid: Uid | None = None
    action: Literal["checkin", "view", "tap", "scan", "checkout"]
    sku: Annotated[int, Field(ge=0)] | None = None
    ts: EpochMs


def _all_channels() -> list[Channel]:
    return ["phone", "kiosk"]


class ShopperConsent(Record):
    """`shopper_consents`, compacted, key ``uid``; tombstone = erased."""

    uid: Uid
    opted_in: bool
    channels: list[Channel] = Field(default_factory=_all_channels)
    updated_at: EpochMs


class NearbyCustomer(Record):
    """`NEARBY_CUSTOMERS`, key ``uid``."""

    uid: Uid
    store_id: ShortText
    pid: ShortText
    sku: int
    segment: str
    distance_ft: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    latitude: Latitude
    longitude: Longitude
    product_latitude: Latitude
    product_longitude: Longitude
    country: str | None = None
    ts: EpochMs


class Offer(Record):
    """`offers`, key ``uid``. ``ts`` is the event time of the position that earned it."""

    offer_id: ShortText
    uid: Uid
    store_id: ShortText
    pid: ShortText
    sku: int
    title: str
    discount_pct: float
    distance_ft: float
    ts: EpochMs
    expires_at: EpochMs


class OfferEvent(Record):
    """`offer_events`, key ``offer_id``."""

    offer_id: ShortText
    uid: Uid
    event: Literal["delivered", "opened", "redeemed"]
    ts: EpochMs


def _raw_text(raw: bytes | bytearray | str | None) -> str | None:
    """A dead letter's raw payload as text: bytes decoded (lossily) and capped at 64 KiB."""
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("utf-8", errors="replace")[:65536]
    return raw


class DeadLetter(Record):
    """`dead_letters`: whatever failed validation, with the reason."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    error: str
    raw: str | None = None

    @field_validator("raw", mode="before")
    @classmethod
    def _bytes_to_text(cls, v: Any) -> Any:
        if isinstance(v, bytes | bytearray):
            return _raw_text(v)
        return v


class RecordError(InstoreError, ValueError):
    """A record that cannot be decoded; ``reason`` is short and safe to log (no values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


R = TypeVar("R", bound=Record)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode(model: type[R], raw: bytes | str | None) -> R:
    """Bytes -> record, or ``RecordError`` saying why (invalid JSON, missing field, range)."""
    if raw is None:
        reason = "empty value (tombstone) where a record was expected"
        raise RecordError(reason)
    try:  # the fast path: pydantic-core parses and validates in one go
        return model.model_validate_json(raw)
    except (ValidationError, ValueError, RecursionError):
        pass  # decode again the slow way, to say why
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = f"invalid JSON: {exc.args[0] if exc.args else exc}"[:200]
        raise RecordError(reason) from None
    return validate(model, data)


def validate(model: type[R], data: Any) -> R:
    if not isinstance(data, dict):
        reason = f"expected a JSON object, got {type(data).__name__}"
        raise RecordError(reason)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reason = f"invalid {model.__name__}: {_describe(exc)}"
        raise RecordError(reason) from None
    except (RecursionError, ValueError) as exc:
        reason = f"invalid {model.__name__}: {type(exc).__name__}"
        raise RecordError(reason) from None


def dead_letter_reason(error: str) -> str:
    """A dead letter's reason category: its error up to the first colon (``invalid JSON``,
    ``invalid CustomerLocation``, ...), what metrics and data-quality counts are labelled by."""
    return error.split(":", 1)[0][:60] or "unknown"


def dead_letter(source_topic: str, error: str, raw: bytes | str | None,
                partition: int | None = None, offset: int | None = None) -> DeadLetter:
    return DeadLetter(source_topic=source_topic, partition=partition, offset=offset,
                      error=error, raw=_raw_text(raw))


def is_finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)
