"""Shopper session tokens: ``uid.issued_ms.expiry.sig``, HMAC-SHA256 with the shopper secret.

A token is valid for exactly one uid until its expiry (epoch seconds), unless it was issued
before that shopper's tokens were revoked (opt-out, erasure: ``api.revocations``). Tokens are
short-lived (``SHOPPER_TOKEN_TTL_S``, 12 h) and renewed by ``GET /shoppers/{uid}/consent``,
which answers with a fresh one. Split from the right, so a uid containing dots round-trips.

Shared by the API (which mints, checks and renews them) and ``instore shopper token`` (which
mints one for a tester without the API), so it lives in the contract package, not in ``api``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from instore.errors import InstoreError

TOKEN_TTL_S = 12 * 3600


class TokenError(InstoreError, ValueError):
    """A token that is malformed, forged, expired or revoked; the message is safe to return."""


@dataclass(frozen=True)
class Claims:
    uid: str
    issued_ms: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sig(secret: bytes, uid: str, issued_ms: int, expiry: int) -> str:
    return _b64(hmac.new(secret, f"{uid}.{issued_ms}.{expiry}".encode(), hashlib.sha256).digest())


def issue(secret: bytes, uid: str, ttl_s: int = TOKEN_TTL_S, now_s: float | None = None) -> str:
    now = time.time() if now_s is None else now_s
    issued_ms, expiry = int(now * 1000), int(now + ttl_s)
    return f"{uid}.{issued_ms}.{expiry}.{_sig(secret, uid, issued_ms, expiry)}"


def claims(secret: bytes, token: str, now_s: float | None = None) -> Claims:
    """Who a token was issued for and when, or ``TokenError`` (revocation is checked by the
    caller, which holds the revocation store)."""
    parts = token.rsplit(".", 3)
    if len(parts) != 4 or not parts[0]:
        msg = "malformed shopper token"
        raise TokenError(msg)
    uid, issued_text, expiry_text, sig = parts
    try:
        issued_ms, expiry = int(issued_text), int(expiry_text)
    except ValueError:
        msg = "malformed shopper token"
        raise TokenError(msg) from None
    if not hmac.compare_digest(_sig(secret, uid, issued_ms, expiry).encode(), sig.encode()):
        msg = "invalid shopper token"
        raise TokenError(msg)
    if expiry < (time.time() if now_s is None else now_s):
        msg = "expired shopper token"
        raise TokenError(msg)
    return Claims(uid, issued_ms)


def verify(secret: bytes, token: str, now_s: float | None = None) -> str:
    """The uid a token was issued for, or ``TokenError`` (signature and expiry only)."""
    return claims(secret, token, now_s).uid
