"""Pure API rules: role of a key, promotion status, funnel figures, promotion validation,
live promotions per product, and refusing to start without secrets in production."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.catalog import LivePromotions
from api.deps import role_of_key
from api.funnel import funnel_of, status_of
from api.main import allowed_origins, create_app
from api.models import PromotionCreate
from instore.records import Promotion, StoreProduct
from instore.settings import DEV_KEYS, Settings


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_role_of_key():
    s = settings()
    assert role_of_key(s, DEV_KEYS["analyst"]) == "analyst"
    assert role_of_key(s, "nope") is None and role_of_key(s, None) is None
    custom = settings(api_key_ops="s3cret-ops")
    assert (
        role_of_key(custom, "s3cret-ops") == "ops" and role_of_key(custom, DEV_KEYS["ops"]) is None
    )


def test_status_and_funnel():
    p = Promotion(pid="p", sku=1, title="t", discount_pct=10, starts_at=100, ends_at=200)
    assert [status_of(p, t) for t in (99, 100, 199, 200)] == [
        "scheduled",
        "active",
        "active",
        "expired",
    ]
    # the stages are the offers that reached them or a later one (serving.reached); the raw
    # event counters ("opened", ...) are not the funnel
    f = funnel_of({"sent": "4", "opened": "9", "reached_delivered": "3", "reached_opened": "2",
                   "reached_redeemed": "1"})
    assert (f.sent, f.delivered, f.opened, f.redeemed) == (4, 3, 2, 1)
    assert (f.open_rate, f.conversion) == (0.5, 0.25)
    assert funnel_of({}).conversion is None


@pytest.mark.parametrize(
    "body",
    [
        {"sku": 1, "title": "t", "discount_pct": 0},
        {"sku": 1, "title": "t", "discount_pct": 90.5},
        {"sku": 1, "title": "t", "discount_pct": 5, "radius_ft": 2.9},
        {"sku": 1, "title": "t", "discount_pct": 5, "radius_ft": 1000.1},
        {"sku": 1, "title": "t", "discount_pct": 5, "starts_at": 5, "ends_at": 5},
        {"sku": 1, "title": "t", "discount_pct": 5, "starts_at": "2030-01-01T00:00:00"},  # no zone
        {"title": "t", "discount_pct": 5},
        {"sku": 1, "title": "", "discount_pct": 5},
        {"sku": 1, "title": "t", "discount_pct": 5, "colour": "red"},
    ],
)
def test_invalid_promotions(body):
    with pytest.raises(ValidationError):
        PromotionCreate.model_validate(body)


def test_valid_promotion_bounds_and_iso_times():
    ok = PromotionCreate.model_validate(
        {
            "segment": "tea",
            "title": "t",
            "discount_pct": 90,
            "radius_ft": 3,
            "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": 1_900_000_000_000,
        }
    )
    assert ok.radius_ft == 3


def test_live_promotions_by_sku_and_segment():
    promos = [
        Promotion(pid="a", sku=1, title="t", discount_pct=5),
        Promotion(pid="b", segment="tea", title="t", discount_pct=5),
        Promotion(pid="c", sku=1, title="t", discount_pct=5, ends_at=10),
    ]
    live = LivePromotions(promos, now_ms=50)
    tea = StoreProduct(sku=1, store_id="s", segment="tea", name="n", latitude=0, longitude=0)
    coffee = StoreProduct(sku=2, store_id="s", segment="coffee", name="n", latitude=0, longitude=0)
    assert live.on(tea) == ["a", "b"] and live.on(coffee) == []


def test_cors_origins_are_the_hub_and_the_api():
    origins = allowed_origins(settings(hub_port=8090, api_port=8080))
    assert "http://127.0.0.1:8090" in origins and "http://localhost:8080" in origins


def test_production_refuses_to_start_without_secrets():
    keys = {f"api_key_{role}": f"real-{role}-key-{'k' * 32}" for role in DEV_KEYS}
    with pytest.raises(ValidationError, match="SHOPPER_TOKEN_SECRET"):
        settings(INSTORE_ENV="production", ably_api_key="app.key:secret", redis_password="p" * 32,
                 **keys)
    with pytest.raises(ValidationError, match="API_KEY_MARKETER"):
        settings(INSTORE_ENV="production")
    prod = settings(INSTORE_ENV="production", ably_api_key="app.key:secret", redis_password="p" * 32,
                    shopper_token_secret="s" * 32, **keys)
    with TestClient(create_app(prod)) as client:  # every secret set: it starts
        assert client.get("/healthz").status_code == 200


def test_table_view_keeps_the_latest_value_per_key():
    from api.tables import TableView
    from instore import topics as t
    from instore.records import ShopperConsent

    view = TableView(settings())  # not started: only what is applied

    def prod(store, sku, segment):
        return StoreProduct(
            sku=sku, store_id=store, segment=segment, name="n", latitude=0, longitude=0
        )

    view.apply(t.STORES_PRODUCTS, "s1:1", prod("s1", 1, "tea"))
    view.apply(t.STORES_PRODUCTS, "s1:2", prod("s1", 2, "tea"))
    view.apply(t.STORES_PRODUCTS, "s:2:7", prod("s:2", 7, "milk"))
    view.apply(t.STORES_PRODUCTS, "s1:1", prod("s1", 1, "coffee"))  # moved segment
    assert view.segments() == ["coffee", "milk", "tea"]
    view.apply(t.STORES_PRODUCTS, "s1:2", None)  # tombstone
    assert view.segments() == ["coffee", "milk"] and not view.sku_known(2)
    view.apply(t.STORES_PRODUCTS, "s:2:7", None)  # a store id with a colon
    assert view.store_counts() == {"s1": 1}
    assert view.product("s1", 1).segment == "coffee" and view.product("s1", 2) is None
    for sku in range(10, 20):
        view.apply(t.STORES_PRODUCTS, f"s1:{sku}", prod("s1", sku, "tea"))
    assert [p.sku for p in view.products_of("s1", segment="tea", limit=3)] == [10, 11, 12]
    view.apply(t.SHOPPER_CONSENTS, "u", ShopperConsent(uid="u", opted_in=True, updated_at=1))
    assert view.consent("u").opted_in is True
    view.apply(t.SHOPPER_CONSENTS, "u", None)
    assert view.consent("u") is None
