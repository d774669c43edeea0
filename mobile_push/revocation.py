"""Revoke a client's push tokens (Ably's revocable tokens), the same call for Ably and the hub.

``POST /keys/{keyName}/revokeTokens`` with ``{"targets": ["clientId:<uid>"]}``, authenticated
with the API key itself (Ably refuses token auth here with 40162). Tokens of that clientId
issued before now stop working at once: REST requests get 401/40141 and open realtime
connections are disconnected with 40141. On Ably the key must have "revocable tokens" enabled
before the tokens were issued. The ``ably`` Python SDK has no revoke call of its own, so with
TLS (Ably) this goes through its generic ``request()`` (same auth, host and fallback hosts as
the rest); the SDK refuses Basic auth over plain HTTP (40103), so against the local hub on
loopback the same request is sent with httpx to the SDK's configured host and port.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from ably.util.exceptions import AblyException

API_VERSION = "3"


class RevocationError(RuntimeError):
    """Revocation was refused or could not be sent; the message holds no personal data."""


async def revoke_client_tokens(rest: Any, client_id: str) -> dict[str, Any]:
    """Revoke every token issued to ``client_id`` so far; Ably's batch result on success."""
    key_name = rest.options.key_name
    if not key_name or not rest.options.key_secret:
        msg = "token revocation needs the API key (basic auth), not a token"
        raise RevocationError(msg)
    if not rest.options.tls:
        return await _revoke_plain_http(rest, key_name, client_id)
    try:
        resp = await rest.request(
            "POST",
            f"/keys/{quote(key_name, safe='')}/revokeTokens",
            API_VERSION,
            body={"targets": [f"clientId:{client_id}"]},
        )
    except (AblyException, httpx.HTTPError, OSError) as exc:
        msg = f"token revocation request failed: {type(exc).__name__}"
        raise RevocationError(msg) from None
    if not resp.success:
        msg = f"token revocation refused: HTTP {resp.status_code} code {resp.error_code}"
        raise RevocationError(msg)
    items = resp.items
    result = items[0] if items and isinstance(items[0], dict) else {}
    if result.get("failureCount"):
        msg = "token revocation refused for the target"
        raise RevocationError(msg)
    return result


async def _revoke_plain_http(rest: Any, key_name: str, client_id: str) -> dict[str, Any]:
    """The local hub without TLS: Basic auth with the key, which the SDK will not send there."""
    http = rest.http
    url = f"http://{http.preferred_host}:{http.preferred_port}/keys/{quote(key_name, safe='')}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(
                f"{url}/revokeTokens",
                json={"targets": [f"clientId:{client_id}"]},
                auth=(key_name, rest.options.key_secret),
            )
    except httpx.HTTPError as exc:
        msg = f"token revocation request failed: {type(exc).__name__}"
        raise RevocationError(msg) from None
    if resp.status_code // 100 != 2:  # noqa: PLR2004
        msg = f"token revocation refused: HTTP {resp.status_code}"
        raise RevocationError(msg)
    result = resp.json()
    if not isinstance(result, dict) or result.get("failureCount"):
        msg = "token revocation refused for the target"
        raise RevocationError(msg)
    return result
