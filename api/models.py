"""Request and response models of the API (Create / Update / Public variants)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Uid = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Channel = Literal["phone", "kiosk"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# shoppers -------------------------------------------------------------------------------
class ConsentIn(Strict):
    opted_in: bool
    channels: list[Channel] = Field(default_factory=lambda: ["phone", "kiosk"], max_length=2)


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
