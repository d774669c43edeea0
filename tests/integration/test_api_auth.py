# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""Auth matrix: every route of the OpenAPI schema x every caller (no key, each role, the
shopper's own token, another shopper's token). No key: 401; another role: 403; allowed: the
route answers (whatever the body makes of it, never 401/403)."""

from __future__ import annotations

import orjson
import pytest
import redis

from instore import serving
from instore.settings import DEV_KEYS
from tests.integration.api_harness import api_settings, bearer, client, unique  # noqa: F401

pytestmark = pytest.mark.integration

M, A, OPS_, K, C, S = "marketer", "analyst", "ops", "kiosk", "cashier", "shopper"
PUBLIC = "public"
# (method, path template) -> who may call it. A new route fails the test until listed here.
POLICY: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): {PUBLIC},
    ("GET", "/readyz"): {PUBLIC},
    ("GET", "/metrics"): {PUBLIC},
    ("GET", "/push/config"): {PUBLIC},
    ("GET", "/ops/status"): {OPS_},
    ("POST", "/promotions"): {M},
    ("GET", "/promotions"): {M, A},
    ("GET", "/promotions/{pid}"): {M, A},
    ("PATCH", "/promotions/{pid}"): {M},
    ("DELETE", "/promotions/{pid}"): {M},
    ("GET", "/stores"): {M, A},
    ("GET", "/stores/{store_id}"): {M, A},
    ("PUT", "/stores/{store_id}"): {M},
    ("DELETE", "/stores/{store_id}"): {M},
    ("GET", "/stores/{store_id}/floor"): {M, A},
    ("POST", "/products"): {M},
    ("GET", "/products"): {M, A},
    ("GET", "/products/segments"): {M, A},
    ("POST", "/products/bulk"): {M},
    ("GET", "/products/{store_id}/{sku}"): {M, A},
    ("DELETE", "/products/{store_id}/{sku}"): {M},
    ("GET", "/funnel/totals"): {M, A},
    ("GET", "/funnel/promotions"): {M, A},
    ("GET", "/funnel/promotions/{pid}"): {M, A},
    ("GET", "/funnel/stores"): {M, A},
    ("GET", "/funnel/stores/{store_id}"): {M, A},
    ("GET", "/offers/feed"): {M, A},
    ("GET", "/analytics/top-products"): {M, A},
    ("GET", "/analytics/bought-together"): {M, A},
    ("GET", "/analytics/timeseries"): {M, A},  # offers and redemptions over time (archive)
    ("POST", "/analytics/sql"): {A},  # the archive (cold storage), read-only
    ("GET", "/lineage"): {M, A, OPS_},
    ("POST", "/ksql"): {A},  # ksqlDB statements, proxied
    ("POST", "/ksql/query"): {A},  # ksqlDB queries, streamed back
    ("GET", "/ksql/sources"): {A},
    ("POST", "/offers/{offer_id}/events"): {S},
    ("POST", "/shoppers/{uid}/consent"): {PUBLIC},  # registration; changes need the bearer
    ("GET", "/shoppers/{uid}/consent"): {S},
    ("POST", "/shoppers/{uid}/ably-token"): {S},
    ("POST", "/shoppers/{uid}/checkin"): {S},  # confirms a kiosk's code, from the phone
    ("GET", "/shoppers/{uid}/offers"): {S, OPS_},
    ("DELETE", "/shoppers/{uid}"): {S, OPS_},
    ("POST", "/kiosks/{store_id}/{kiosk_id}/interactions"): {K},
    ("POST", "/kiosks/{store_id}/{kiosk_id}/ably-token"): {K},
    ("POST", "/kiosks/{store_id}/{kiosk_id}/checkin-codes"): {K},
    ("GET", "/kiosks/{store_id}/{kiosk_id}/checkin-codes/{code}"): {K},
    # the offers and "show me where" of the shopper checked in at that kiosk
    ("GET", "/kiosks/{store_id}/{kiosk_id}/shoppers/{uid}/offers"): {K},
    ("GET", "/kiosks/{store_id}/{kiosk_id}/shoppers/{uid}/offers/{offer_id}/where"): {K},
    # the code an offer shows at the till (QR + text), and its "show me where" map
    ("GET", "/shoppers/{uid}/offers/{offer_id}/code"): {S},
    ("GET", "/shoppers/{uid}/offers/{offer_id}/where"): {S},
    ("POST", "/redemptions"): {C},  # only the till redeems
}
CALLERS = ("none", M, A, OPS_, K, C, "own-shopper", "other-shopper")


def operations(client) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


def test_every_route_is_in_the_policy(client):
    assert set(operations(client)) == set(POLICY)


def test_auth_matrix(client, api_settings):
    uid = unique("matrix")
    own = client.post(f"/shoppers/{uid}/consent", json={"opted_in": True}).json()["shopper_token"]
    other_uid = unique("matrix")
    other = client.post(f"/shoppers/{other_uid}/consent", json={"opted_in": True}).json()
    # an offer to this shopper in the serving store: no analyst answer may carry the uid
    # (privacy finding 7: analysts get aggregates)
    rds = redis.Redis.from_url(api_settings.redis_address)
    offer = {"offer_id": unique("offer"), "uid": uid, "store_id": "no-such-store", "pid": "p",
             "sku": 1, "title": "t", "discount_pct": 5, "distance_ft": 3.0, "ts": 1, "expires_at": 2}
    rds.lpush(serving.offers_feed(), orjson.dumps(offer))
    leaks = []
    failures = []
    for method, template in operations(client):
        path = (
            template.replace("{uid}", uid)
            .replace("{sku}", "1")
            .replace("{pid}", "no-such-promo")
            .replace("{offer_id}", "no-such-offer")
            .replace("{store_id}", "no-such-store")
            .replace("{kiosk_id}", "k1")
            .replace("{code}", "123456")
        )
        allowed = POLICY[(method, template)]
        registration = (method, template) == ("POST", "/shoppers/{uid}/consent")
        erasure = (method, template) == ("DELETE", "/shoppers/{uid}")
        for caller in CALLERS:
            own_token = own
            if registration:  # a fresh uid each time: registering needs no credentials
                path = f"/shoppers/{unique('fresh')}/consent"
            if erasure:  # erasing revokes the shopper's tokens: a throwaway shopper each time
                gone = unique("erase")
                own_token = client.post(f"/shoppers/{gone}/consent",
                                        json={"opted_in": True}).json()["shopper_token"]
                path = f"/shoppers/{gone}"
            headers = {}
            if caller in DEV_KEYS:
                headers = {"X-API-Key": DEV_KEYS[caller]}
            elif caller == "own-shopper":
                headers = bearer(own_token)
            elif caller == "other-shopper":
                headers = bearer(other["shopper_token"])
            res = client.request(method, path, headers=headers, json={})
            code = res.status_code
            shopper_ok = S in allowed and (
                caller == "own-shopper" or (caller == "other-shopper" and "{uid}" not in template)
            )
            if registration and caller.endswith("-shopper"):
                ok = code == 403  # a token for another uid is refused, not ignored
            elif PUBLIC in allowed or caller in allowed or shopper_ok:
                ok = code not in (401, 403)
            elif caller == "none":
                ok = code == 401
            elif caller in DEV_KEYS:
                ok = code == 403
            elif S in allowed:  # another shopper's token on a shopper route
                ok = code == 403
            else:  # a shopper token where a role key is needed
                ok = code == 401
            if not ok:
                failures.append(f"{method} {template} as {caller}: {code}")
            if caller == A and code < 300 and (uid in res.text or other_uid in res.text):
                leaks.append(f"{method} {template}")
    rds.lrem(serving.offers_feed(), 0, orjson.dumps(offer))
    assert failures == [], "\n".join(failures)
    assert leaks == [], f"analyst answers carrying a uid: {leaks}"


def test_unknown_key_is_401_and_keys_are_not_echoed(client):
    res = client.get("/promotions", headers={"X-API-Key": "guess"})
    assert res.status_code == 401 and "guess" not in res.text
