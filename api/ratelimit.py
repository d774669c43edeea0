"""Rate limits per client address for the routes an attacker would hammer.

- Token and registration routes (a shopper token from ``POST /shoppers/{uid}/consent``, Ably
  token requests for a shopper or a kiosk): at most ``api_token_rate_per_min`` per route and
  client address, as a token bucket (bursts up to the same number).
- Guessing: a request that presents an unknown ``X-API-Key`` or an invalid shopper token
  costs one from a per-address budget of ``api_auth_failures_per_min``; once it is spent, every
  request from that address is answered 429 until the bucket refills. A missing credential is
  not a guess (it is a plain 401) and costs nothing.

Answers 429 with ``Retry-After``. The budgets are counted in Redis (``limits``' moving window,
``instore.ratelimit.SharedRateLimiter``): every API process behind a load balancer spends the
same budget. With Redis unreachable requests are let through (and logged).
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from instore import shopper_tokens as tokens
from instore.ratelimit import SharedRateLimiter
from instore.settings import Settings

log = logging.getLogger(__name__)

TOKEN_ROUTES = (
    ("POST", re.compile(r"^/shoppers/[^/]+/consent$"), "shopper-consent"),
    ("POST", re.compile(r"^/shoppers/[^/]+/ably-token$"), "shopper-ably-token"),
    ("POST", re.compile(r"^/kiosks/[^/]+/[^/]+/ably-token$"), "kiosk-ably-token"),
    ("POST", re.compile(r"^/shoppers/[^/]+/checkin$"), "shopper-checkin"),
)
def presents_bad_credentials(request: Request, settings: Settings) -> bool:
    """The request carries an X-API-Key no role has, or a shopper token that does not verify."""
    from api.deps import role_of_key  # noqa: PLC0415

    key = request.headers.get("x-api-key")
    if key and role_of_key(settings, key) is None:
        return True
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        try:
            tokens.verify(settings.shopper_secret, auth[7:].strip())
        except tokens.TokenError:
            return True
    return False


def _too_many(retry_after: int, what: str) -> Response:
    return JSONResponse({"detail": f"too many {what}: try again later"}, status_code=429,
                        headers={"Retry-After": str(retry_after)})


def install(app: FastAPI, settings: Settings) -> None:
    """Add the rate-limiting middleware to ``app``."""
    token_limit = SharedRateLimiter(
        settings.redis_address, settings.api_token_rate_per_min, "api-token"
    )
    guess_limit = SharedRateLimiter(
        settings.redis_address, settings.api_auth_failures_per_min, "api-auth-failures"
    )
    app.state.rate_limits = {"token": token_limit, "auth_failures": guess_limit}

    @app.middleware("http")
    async def rate_limit(request: Request, call_next):  # type: ignore[no-untyped-def]
        client = request.client.host if request.client else "unknown"
        if await guess_limit.exhausted(client):
            return _too_many(await guess_limit.retry_after_s(client), "failed authentications")
        if presents_bad_credentials(request, settings):
            await guess_limit.allow(client)
            if await guess_limit.exhausted(client):
                log.warning("rate limit: failed authentications from one client exhausted")
        path = request.url.path
        for method, pattern, name in TOKEN_ROUTES:
            if request.method == method and pattern.match(path):
                key = f"{client}|{name}"
                if not await token_limit.allow(key):
                    return _too_many(await token_limit.retry_after_s(key), "token requests")
                break
        return await call_next(request)
