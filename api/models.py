"""Request and response models of the API (Create / Update / Public variants)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Uid = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Channel = Literal["phone", "kiosk"]
ALL_CHANNELS: tuple[Channel, ...] = ("phone", "kiosk")
MAX_MS = 32_503_680_000_000  # year 3000, as the contract's EpochMs


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# shoppers -------------------------------------------------------------------------------
class ConsentIn(Strict):
    opted_in: bool
    channels: list[Channel] = Field(default_factory=lambda: list(ALL_CHANNELS), max_length=2)


class ConsentPublic(BaseModel):
    uid: str
    opted_in: bool
    channels: list[Channel]
    updated_at: int
    shopper_token: str = Field(description="bearer token for this shopper only (uid.expiry.sig)")


class ErasurePublic(BaseModel):
    uid: str
    tombstoned: list[str] = Field(description="topics that got a tombstone for this shopper")
    redis_keys_deleted: list[str]
    offers_deleted: int
    store_sets_cleaned: list[str] = Field(description="stores whose live set / positions held them")
    feed_entries_removed: int
    push_tokens_revoked: bool = Field(
        default=False, description="the shopper's Ably/push-hub tokens were revoked (clientId)")
    aof_rewrite_started: bool = Field(
        default=False, description="Redis is rewriting its append-only file, so the shopper's "
        "old writes leave the disk within seconds (false where Redis keeps no AOF)")
    erased_now: list[str] = Field(
        default_factory=list, description="what is gone when this answer arrives; \"archive "
        "identity\": the shopper's archive key is deleted, so no archived row can be linked "
        "to the uid any more, and rows archived later carry no identity")
    compacted_within_s: int = Field(
        default=0, description="the consent record (and every superseded one) is compacted "
        "out of shopper_consents within this many seconds")
    streams_expire_within_s: int = Field(
        default=0, description="every stream record carrying the uid (positions, NEARBY rows, "
        "offers, offer events, kiosk interactions, dead letters) is deleted within this many "
        "seconds (the stream retention)")


class TokenRequestPublic(BaseModel):
    """An Ably TokenRequest, signed with the API key; the client exchanges it for a token."""

    keyName: str  # noqa: N815 (Ably's wire names)
    clientId: str | None = None  # noqa: N815
    ttl: int | None = None
    nonce: str
    capability: str
    timestamp: int
    mac: str


# offers ---------------------------------------------------------------------------------
class OfferEventIn(Strict):
    event: Literal["opened", "redeemed"]


class OfferEventPublic(BaseModel):
    offer_id: str
    event: str
    ts: int
    counted: bool = Field(description="false when this event was already recorded for the offer")


# kiosks ---------------------------------------------------------------------------------
class KioskInteractionIn(Strict):
    uid: Uid | None = None
    action: Literal["checkin", "view", "tap", "scan", "checkout"]
    sku: Annotated[int, Field(ge=0, le=2**53)] | None = None


class CheckinCodePublic(BaseModel):
    code: str = Field(description="six digits the kiosk shows; the shopper types them on "
                      "their phone (POST /shoppers/{uid}/checkin)")
    state: Literal["waiting", "confirmed"] = "waiting"
    uid: str | None = Field(default=None, description="the shopper who confirmed it")
    expires_in_s: int


class CheckinIn(Strict):
    code: Annotated[str, Field(pattern=r"^[0-9]{6}$", description="the kiosk's code")]


class KioskInteractionPublic(BaseModel):
    store_id: str
    kiosk_id: str
    action: str
    ts: int


# push -----------------------------------------------------------------------------------
class PushConfig(BaseModel):
    mode: Literal["hub", "ably"]
    rest_host: str | None
    port: int | None
    tls: bool


class Problem(BaseModel):
    detail: Any


# promotions -----------------------------------------------------------------------------
Timestamp = Annotated[
    int | AwareDatetime,
    Field(description="epoch milliseconds, or an ISO 8601 date-time with a time zone"),
]
Sku = Annotated[int, Field(ge=0, le=2**53)]
Segment = Annotated[str, Field(min_length=1, max_length=128)]
Title = Annotated[str, Field(min_length=1, max_length=256)]
Discount = Annotated[float, Field(ge=1, le=90, allow_inf_nan=False, description="percent, 1-90")]
Radius = Annotated[float, Field(ge=3, le=1000, allow_inf_nan=False, description="feet, 3-1000")]


def epoch_ms(value: int | datetime | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


class PromotionCreate(Strict):
    pid: Ident | None = Field(default=None, description="generated when absent")
    sku: Sku | None = None
    segment: Segment | None = None
    title: Title
    discount_pct: Discount
    radius_ft: Radius = 100.0
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None

    @model_validator(mode="after")
    def _target_and_schedule(self) -> PromotionCreate:
        if self.sku is None and self.segment is None:
            msg = "a promotion needs a sku or a segment"
            raise ValueError(msg)
        start, end = epoch_ms(self.starts_at), epoch_ms(self.ends_at)
        if start is not None and not 0 <= start <= MAX_MS:
            msg = "starts_at is out of range"
            raise ValueError(msg)
        if end is not None and not 0 <= end <= MAX_MS:
            msg = "ends_at is out of range"
            raise ValueError(msg)
        if start is not None and end is not None and start >= end:
            msg = "starts_at must be before ends_at"
            raise ValueError(msg)
        return self


class PromotionUpdate(Strict):
    sku: Sku | None = None
    segment: Segment | None = None
    title: Title | None = None
    discount_pct: Discount | None = None
    radius_ft: Radius | None = None
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None


class Funnel(BaseModel):
    nearby: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    redeemed: int = 0
    open_rate: float | None = Field(default=None, description="opened / sent")
    conversion: float | None = Field(default=None, description="redeemed / sent")


class PromotionPublic(BaseModel):
    pid: str
    sku: int | None
    segment: str | None
    title: str
    discount_pct: float
    radius_ft: float
    starts_at: int | None
    ends_at: int | None
    status: Literal["scheduled", "active", "expired"]
    stats: Funnel


# catalog --------------------------------------------------------------------------------
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Lon = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Country = Annotated[str, Field(min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$",
                               description="ISO 3166-1 alpha-2")]


class StoreIn(Strict):
    name: Title
    latitude: Lat = Field(description="anchor latitude (the store's centre)")
    longitude: Lon = Field(description="anchor longitude")
    geofence_radius_m: Annotated[float, Field(gt=0, le=5000, allow_inf_nan=False)] = 100.0
    country: Country


class StorePublic(BaseModel):
    store_id: str
    name: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    geofence_radius_m: float | None = None
    country: str | None = None
    products: int = 0
    live_shoppers: int = 0


class ProductIn(Strict):
    sku: Sku
    store_id: Ident
    segment: Segment
    variant: Annotated[str, Field(max_length=128)] | None = None
    name: Title
    latitude: Lat
    longitude: Lon
    country: Country | None = Field(default=None, description="defaults to the store's country")


class ProductPublic(BaseModel):
    sku: int
    store_id: str
    segment: str
    variant: str | None
    name: str
    latitude: float
    longitude: float
    country: str | None
    promoted_by: list[str] = Field(default_factory=list, description="live promotions on it")


class RowError(BaseModel):
    row: int = Field(description="1-based line number in the file (the header is line 1)")
    error: str


class BulkReport(BaseModel):
    rows: int
    accepted: int
    rejected: int
    errors: list[RowError]


class ShopperDot(BaseModel):
    """A shopper on the floor map: a position and its age, never who it is."""

    latitude: float
    longitude: float
    age_ms: int


class FloorPublic(BaseModel):
    store: StorePublic
    products: list[ProductPublic]
    shoppers: list[ShopperDot]
