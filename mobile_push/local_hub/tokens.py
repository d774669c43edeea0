"""Ably-compatible key and token auth for the local push hub (pure logic, no I/O).

- An API key is ``appId.keyId:secret``; its *key name* is the part before ``:``.
- A TokenRequest is signed exactly as Ably signs it: ``mac = base64(HMAC-SHA256(secret,
  keyName\\nttl\\ncapability\\nclientId\\ntimestamp\\nnonce\\n))``.
- The hub's tokens are self-contained and signed with the key secret
  (``<base64url(json)>.<base64url(hmac)>``), so a restarted hub still honours them. The SDK
  sends them base64-encoded in ``Authorization: Bearer``; browsers pass them raw as
  ``?accessToken=``; both are accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from instore.errors import InstoreError
from mobile_push.local_hub import capability as cap

DEFAULT_TTL_MS = 60 * 60 * 1000
MAX_TTL_MS = 24 * 60 * 60 * 1000
TIMESTAMP_SKEW_MS = 10 * 60 * 1000  # how far a TokenRequest's timestamp may be from the hub clock


class AuthError(InstoreError):
    """An Ably error: HTTP status, Ably error code and a message safe to return to callers."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "code": self.code,
                "statusCode": self.status,
                "href": f"https://help.ably.io/error/{self.code}",
            }
        }


def unauthorized(message: str, code: int = 40101) -> AuthError:
    return AuthError(401, code, message)


def forbidden(message: str) -> AuthError:
    return AuthError(403, 40160, message)


@dataclass(frozen=True)
class ApiKey:
    name: str  # appId.keyId
    secret: str
    capability: cap.Capability

    @classmethod
    def parse(cls, key: str, capability: cap.Capability | None = None) -> ApiKey:
        name, sep, secret = key.partition(":")
        if not sep or not name or not secret:
            msg = "an Ably key looks like appId.keyId:secret"
            raise ValueError(msg)
        return cls(name, secret, capability if capability is not None else {"*": frozenset({"*"})})


@dataclass(frozen=True)
class Grant:
    """What a request is allowed to do, from a key (Basic) or a token (Bearer)."""

    key_name: str
    capability: cap.Capability
    client_id: str | None
    expires: int | None  # epoch ms; None for Basic auth
    issued: int | None = None  # epoch ms the token was issued; None for Basic auth

    @property
    def is_key(self) -> bool:
        """Basic auth with the key itself (not a token derived from it)."""
        return self.expires is None

    def require(self, channel: str, operation: str, now_ms: int | None = None) -> None:
        if (
            self.expires is not None
            and (now_ms if now_ms is not None else _now_ms()) >= self.expires
        ):
            msg = "Token expired"
            raise unauthorized(msg, 40142)
        if not cap.allows(self.capability, channel, operation):
            msg = (
                f"Unable to perform channel operation '{operation}' on channel '{channel}' "
                "(permission denied)"
            )
            raise forbidden(msg)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_request_mac(
    secret: str,
    key_name: str,
    ttl: Any,
    capability: str | None,
    client_id: str | None,
    timestamp: Any,
    nonce: str | None,
) -> str:
    """The MAC of a TokenRequest, exactly as the Ably SDKs compute it."""
    text = "\n".join(
        [
            key_name or "",
            "" if ttl in (None, "", 0) else str(ttl),
            capability or "",
            client_id or "",
            str(timestamp or 0),
            nonce or "",
            "",
        ]
    )
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_token_request(
    key: ApiKey,
    *,
    capability: dict[str, list[str]] | None = None,
    client_id: str | None = None,
    ttl_ms: int | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A TokenRequest dict (what an auth server hands a browser); the ably SDK's
    ``create_token_request`` produces the same."""
    cap_text = json.dumps(capability, separators=(",", ":")) if capability is not None else None
    req = {
        "keyName": key.name,
        "ttl": ttl_ms,
        "capability": cap_text,
        "clientId": client_id,
        "timestamp": timestamp if timestamp is not None else _now_ms(),
        "nonce": nonce or _b64url(hashlib.sha256(str(time.time_ns()).encode()).digest()[:12]),
    }
    req["mac"] = token_request_mac(
        key.secret, key.name, ttl_ms, cap_text, client_id, req["timestamp"], str(req["nonce"])
    )
    return req


class NonceCache:
    """Nonces seen within the timestamp window (Ably refuses a replayed TokenRequest)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max = max_entries

    def check_and_add(self, key: str, now_ms: int) -> bool:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now_ms - at > 2 * TIMESTAMP_SKEW_MS or len(self._seen) > self._max:
                self._seen.pop(oldest)
            else:
                break
        if key in self._seen:
            return False
        self._seen[key] = now_ms
        return True


REVOKE_REAUTH_MARGIN_MS = 30_000  # Ably postpones a revocation this long with allowReauthMargin
REVOKE_MAX_TARGETS = 100


@dataclass(frozen=True)
class Revocation:
    """Tokens of ``key_name`` for ``target`` issued before ``issued_before`` are refused from
    ``applies_at`` on (Ably's revocable tokens; targets ``clientId:<id>`` or ``channel:<name>``)."""

    key_name: str
    target: str
    issued_before: int
    applies_at: int

    def revokes(self, grant: Grant, now_ms: int) -> bool:
        if grant.is_key or grant.key_name != self.key_name or now_ms < self.applies_at:
            return False
        if grant.issued is None or grant.issued >= self.issued_before:
            return False
        kind, _, value = self.target.partition(":")
        if kind == "clientId":
            return grant.client_id == value
        if kind == "channel":
            return any(cap.resource_matches(res, value) for res in grant.capability)
        return False


class TokenAuthority:
    """Verifies keys and TokenRequests and issues/validates the hub's tokens."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = {k.name: k for k in keys}
        self.nonces = NonceCache()
        # (key name, target) -> the latest revocation for it; memory only, like the hub.
        self.revocations: dict[tuple[str, str], Revocation] = {}

    # -- revocation ---------------------------------------------------------------------------
    def revoke(
        self, grant: Grant, key_name: str, body: dict[str, Any], now_ms: int | None = None
    ) -> dict[str, Any]:
        """``POST /keys/{keyName}/revokeTokens``: Basic auth with that key only (Ably: 40162 for
        token auth). Returns Ably's batch result: successCount, failureCount, results."""
        now = now_ms if now_ms is not None else _now_ms()
        if not grant.is_key:
            raise AuthError(401, 40162, "Cannot revoke tokens when using token auth")
        if grant.key_name != key_name:
            raise AuthError(401, 40101, "Token revocation must use the key that issued them")
        targets = body.get("targets")
        if (
            not isinstance(targets, list)
            or not targets
            or len(targets) > REVOKE_MAX_TARGETS
            or not all(isinstance(t, str) for t in targets)
        ):
            raise AuthError(
                400, 40000, f"targets must be a list of 1..{REVOKE_MAX_TARGETS} strings"
            )
        issued_before = body.get("issuedBefore")
        if issued_before is None:
            issued_before = now
        elif not isinstance(issued_before, int) or isinstance(issued_before, bool):
            raise AuthError(400, 40003, "issuedBefore must be a timestamp in milliseconds")
        elif issued_before > now:
            raise AuthError(400, 40003, "issuedBefore must not be in the future")
        applies_at = now + (REVOKE_REAUTH_MARGIN_MS if body.get("allowReauthMargin") else 0)
        # A revocation older than the longest token lifetime no longer matches a live token.
        for k in [k for k, r in self.revocations.items() if r.issued_before + MAX_TTL_MS < now]:
            del self.revocations[k]
        results: list[dict[str, Any]] = []
        for target in targets:
            kind, sep, value = target.partition(":")
            if not sep or not value or kind not in ("clientId", "channel"):
                err = AuthError(400, 40000, f"Invalid token revocation target {target!r}")
                results.append({"target": target, "error": err.as_json()["error"]})
                continue
            self.revocations[(key_name, target)] = Revocation(
                key_name, target, issued_before, applies_at
            )
            results.append(
                {"target": target, "issuedBefore": issued_before, "appliesAt": applies_at}
            )
        ok = sum(1 for r in results if "error" not in r)
        return {"successCount": ok, "failureCount": len(results) - ok, "results": results}

    def revocations_json(self) -> list[dict[str, Any]]:
        return [
            {"k": r.key_name, "t": r.target, "b": r.issued_before, "a": r.applies_at}
            for r in self.revocations.values()
        ]

    def load_revocations(self, items: list[dict[str, Any]], now_ms: int | None = None) -> int:
        """Revocations saved by an earlier run (a restarted hub keeps refusing revoked tokens,
        which it would otherwise honour until expiry); stale ones are dropped."""
        now = now_ms if now_ms is not None else _now_ms()
        for item in items:
            try:
                rev = Revocation(str(item["k"]), str(item["t"]), int(item["b"]), int(item["a"]))
            except (KeyError, TypeError, ValueError):
                continue
            if rev.key_name in self.keys and rev.issued_before + MAX_TTL_MS >= now:
                self.revocations[(rev.key_name, rev.target)] = rev
        return len(self.revocations)

    def revoked(self, grant: Grant, now_ms: int | None = None) -> Revocation | None:
        """The revocation that applies to this token grant, if any."""
        if grant.is_key or not self.revocations:
            return None
        now = now_ms if now_ms is not None else _now_ms()
        candidates = []
        if grant.client_id:
            candidates.append(self.revocations.get((grant.key_name, f"clientId:{grant.client_id}")))
        candidates += [
            rev
            for (k, target), rev in self.revocations.items()
            if k == grant.key_name and target.startswith("channel:")
        ]
        for rev in candidates:
            if rev is not None and rev.revokes(grant, now):
                return rev
        return None

    def check_revoked(self, grant: Grant, now_ms: int | None = None) -> None:
        if self.revoked(grant, now_ms) is not None:
            msg = "Token revoked"
            raise unauthorized(msg, 40141)

    # -- keys ---------------------------------------------------------------------------------
    def basic(self, credentials_b64: str) -> Grant:
        try:
            text = base64.b64decode(credentials_b64, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            msg = "Invalid credentials: malformed Basic auth"
            raise unauthorized(msg) from None
        name, _, secret = text.partition(":")
        key = self.keys.get(name)
        if key is None or not hmac.compare_digest(key.secret.encode(), secret.encode()):
            msg = "Invalid credentials: unknown key or wrong secret"
            raise unauthorized(msg)
        return Grant(key.name, key.capability, None, None)

    # -- token requests -----------------------------------------------------------------------
    def request_token(
        self, key_name: str, body: dict[str, Any], now_ms: int | None = None
    ) -> dict[str, Any]:
        """Verify a signed TokenRequest and return TokenDetails JSON (Ably's shape)."""
        now = now_ms if now_ms is not None else _now_ms()
        key = self.keys.get(key_name)
        if key is None or body.get("keyName") not in (None, key_name):
            msg = "Invalid key in request: unknown key name"
            raise unauthorized(msg, 40101)
        mac = body.get("mac")
        if not isinstance(mac, str):
            raise AuthError(400, 40000, "TokenRequest has no mac")
        ttl = body.get("ttl")
        capability_text = body.get("capability")
        client_id = body.get("clientId")
        timestamp = body.get("timestamp")
        nonce = body.get("nonce")
        if capability_text is not None and not isinstance(capability_text, str):
            capability_text = json.dumps(capability_text, separators=(",", ":"))
        expected = token_request_mac(
            key.secret, key_name, ttl, capability_text, client_id, timestamp, nonce
        )
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            msg = "Invalid mac: the TokenRequest was not signed with this key's secret"
            raise unauthorized(msg, 40101)
        try:
            ts = int(timestamp)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise AuthError(400, 40001, "TokenRequest timestamp is not a number") from None
        if abs(now - ts) > TIMESTAMP_SKEW_MS:
            msg = "Timestamp not current"
            raise unauthorized(msg, 40104)
        if not isinstance(nonce, str) or len(nonce) < 16:
            raise AuthError(400, 40001, "TokenRequest nonce must be at least 16 characters")
        if not self.nonces.check_and_add(f"{key_name}:{nonce}", now):
            msg = "Nonce value replayed"
            raise unauthorized(msg, 40105)
        try:
            ttl_ms = DEFAULT_TTL_MS if ttl in (None, "") else int(ttl)
        except (TypeError, ValueError):
            raise AuthError(400, 40001, "TokenRequest ttl is not a number") from None
        if ttl_ms <= 0 or ttl_ms > MAX_TTL_MS:
            raise AuthError(400, 40003, f"ttl must be between 1 and {MAX_TTL_MS} ms")
        try:
            requested = cap.parse(capability_text)
        except cap.CapabilityError as exc:
            raise AuthError(400, 40000, f"Invalid capability: {exc}") from None
        granted = cap.intersect(requested, key.capability)
        if not granted:
            msg = "Requested capability is not permitted by the key"
            raise forbidden(msg)
        # The token counts as issued when its request was signed: a request signed before a
        # revocation (erasure) and exchanged after it gives a token that is already revoked.
        return self.issue(key, granted, client_id, ttl_ms, now, issued_ms=min(ts, now))

    def issue(
        self,
        key: ApiKey,
        capability: cap.Capability,
        client_id: str | None,
        ttl_ms: int,
        now_ms: int,
        issued_ms: int | None = None,
    ) -> dict[str, Any]:
        cap_text = cap.dumps(capability)
        issued = now_ms if issued_ms is None else issued_ms
        payload = {"k": key.name, "i": issued, "x": now_ms + ttl_ms, "c": cap_text, "u": client_id}
        body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
        sig = _b64url(hmac.new(key.secret.encode(), body.encode(), hashlib.sha256).digest())
        return {
            "token": f"{body}.{sig}",
            "keyName": key.name,
            "issued": issued,
            "expires": now_ms + ttl_ms,
            "capability": cap_text,
            "clientId": client_id,
        }

    # -- tokens -------------------------------------------------------------------------------
    def bearer(self, token: str, now_ms: int | None = None) -> Grant:
        """A token as sent by the SDK (base64 of the token) or raw (browsers)."""
        candidates = [token]
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = None
        if decoded:
            candidates.insert(0, decoded)
        for candidate in candidates:
            grant = self._verify(candidate)
            if grant is not None:
                now = now_ms if now_ms is not None else _now_ms()
                if grant.expires is not None and now >= grant.expires:
                    msg = "Token expired"
                    raise unauthorized(msg, 40142)
                self.check_revoked(grant, now)
                return grant
        msg = "Invalid token: not issued by this hub or tampered with"
        raise unauthorized(msg, 40140)

    def _verify(self, token: str) -> Grant | None:
        body, dot, sig = token.partition(".")
        if not dot:
            return None
        try:
            payload = json.loads(_unb64url(body))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(payload, dict):
            return None
        key = self.keys.get(str(payload.get("k")))
        if key is None:
            return None
        expected = _b64url(hmac.new(key.secret.encode(), body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            return None
        try:
            capability = cap.parse(payload.get("c"))
        except cap.CapabilityError:
            return None
        return Grant(
            key.name, capability, payload.get("u"), int(payload["x"]), int(payload.get("i") or 0)
        )
