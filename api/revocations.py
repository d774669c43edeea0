"""What must outlive a shopper's opt-out or erasure, without keeping who they were.

Keys are a keyed hash of the uid (HMAC with the shopper secret), not the uid, and expire:
- ``revoked``: tokens issued before this time (ms) are refused, for as long as a token lives;
- ``erased``: this uid was erased: it cannot be registered again while records carrying it
  may still be in the streams (the stream retention), so nobody can take over its history.
"""

from __future__ import annotations

from typing import Any

from instore import serving
from instore.records import now_ms

_pseudonym = serving.pseudonym


def revoke_tokens(rds: Any, secret: bytes, uid: str, token_ttl_s: int) -> int:
    """Refuse every token of ``uid`` issued before now; returns the revocation time (ms)."""
    at = now_ms()
    rds.set(serving.tokens_revoked(_pseudonym(secret, uid)), at, ex=token_ttl_s)
    return at


def revoked(rds: Any, secret: bytes, uid: str, issued_ms: int) -> bool:
    at = rds.get(serving.tokens_revoked(_pseudonym(secret, uid)))
    return at is not None and issued_ms < int(at)


def mark_erased(rds: Any, secret: bytes, uid: str, keep_s: int) -> None:
    rds.set(serving.erased(_pseudonym(secret, uid)), 1, ex=max(1, keep_s))


def was_erased(rds: Any, secret: bytes, uid: str) -> bool:
    return bool(rds.exists(serving.erased(_pseudonym(secret, uid))))
