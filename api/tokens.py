"""Shopper session tokens: ``uid.expiry.sig``, HMAC-SHA256 with ``settings.shopper_secret``.

A token is valid for exactly one uid until its expiry (epoch seconds). It is split from the
right, so a uid containing dots still round-trips (expiry and signature never hold one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

TOKEN_TTL_S = 30 * 24 * 3600


class TokenError(ValueError):
    """A token that is malformed, forged or expired; the message is safe to return."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sig(secret: bytes, uid: str, expiry: int) -> str:
    return _b64(hmac.new(secret, f"{uid}.{expiry}".encode(), hashlib.sha256).digest())


def issue(secret: bytes, uid: str, ttl_s: int = TOKEN_TTL_S, now_s: float | None = None) -> str:
    expiry = int((time.time() if now_s is None else now_s) + ttl_s)
    return f"{uid}.{expiry}.{_sig(secret, uid, expiry)}"


def verify(secret: bytes, token: str, now_s: float | None = None) -> str:
    """The uid a token was issued for, or ``TokenError``."""
    parts = token.rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:  # noqa: PLR2004
        msg = "malformed shopper token"
        raise TokenError(msg)
    uid, expiry_text, sig = parts
    try:
        expiry = int(expiry_text)
    except ValueError:
        msg = "malformed shopper token"
        raise TokenError(msg) from None
    if not hmac.compare_digest(_sig(secret, uid, expiry).encode(), sig.encode()):
        msg = "invalid shopper token"
        raise TokenError(msg)
    if expiry < (time.time() if now_s is None else now_s):
        msg = "expired shopper token"
        raise TokenError(msg)
    return uid
