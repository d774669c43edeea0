"""Ably client factories, shared by every part that talks to Ably or the local push hub (the
push sink publishes, the API revokes a shopper's tokens): where the `ably` SDK talks to, an
``AblyRest`` for it, and token revocation. The same calls for Ably and the hub; only host,
port and TLS differ.

Revocation: ``POST /keys/{keyName}/revokeTokens`` with ``{"targets": ["clientId:<uid>"]}``,
authenticated with the API key itself (Ably refuses token auth here with 40162). Tokens of that
clientId issued before now stop working at once: REST requests get 401/40141 and open realtime
connections are disconnected with 40141. On Ably the key must have "revocable tokens" enabled
before the tokens were issued. The ``ably`` Python SDK has no revoke call of its own, so with
TLS (Ably) this goes through its generic ``request()`` (same auth, host and fallback hosts as
the rest); the SDK refuses Basic auth over plain HTTP (40103), so against the local hub on
loopback the same request is sent with httpx to the SDK's configured host and port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from instore.errors import InstoreError
from instore.settings import Settings


@dataclass(frozen=True)
class AblyTarget:
    mode: str  # "hub" | "ably"
    rest_host: str | None
    port: int | None
    tls: bool

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "rest_host": self.rest_host, "port": self.port, "tls": self.tls}


def target(settings: Settings) -> AblyTarget:
    if settings.push_hub_local:  # the hub serves TLS when TLS_CERT_FILE/TLS_KEY_FILE are set
        return AblyTarget("hub", settings.host, settings.hub_port, bool(settings.uvicorn_tls()))
    if settings.ably_rest_host is not None:
        tls = True if settings.ably_tls is None else settings.ably_tls
        local = settings.ably_rest_host in ("127.0.0.1", "localhost", settings.host)
        return AblyTarget(
            "hub" if local and not tls else "ably", settings.ably_rest_host, settings.ably_port, tls
        )
    return AblyTarget("ably", None, None, True)


def make_rest(settings: Settings, **overrides: Any) -> Any:
    """An async ``AblyRest`` for the configured target (token auth against the hub, where the
    SDK refuses Basic auth without TLS)."""
    from ably import AblyRest  # noqa: PLC0415

    where = target(settings)
    if where.rest_host is None:
        return AblyRest(key=settings.ably_key, **overrides)
    opts: dict[str, Any] = {
        "key": settings.ably_key,
        "endpoint": where.rest_host,
        "tls": where.tls,
        "use_binary_protocol": False,
        "fallback_hosts": [],
    }
    if where.port is not None:
        opts["tls_port" if where.tls else "port"] = where.port
    if not where.tls:
        opts["use_token_auth"] = True
    opts.update(overrides)
    return AblyRest(**opts)


API_VERSION = "3"


class RevocationError(InstoreError, RuntimeError):
    """Revocation was refused or could not be sent; the message holds no personal data."""


async def revoke_client_tokens(rest: Any, client_id: str) -> dict[str, Any]:
    """Revoke every token issued to ``client_id`` so far; Ably's batch result on success."""
    key_name = rest.options.key_name
    if not key_name or not rest.options.key_secret:
        msg = "token revocation needs the API key (basic auth), not a token"
        raise RevocationError(msg)
    if not rest.options.tls:
        return await _revoke_plain_http(rest, key_name, client_id)
    from ably.util.exceptions import AblyException  # noqa: PLC0415

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
    if resp.status_code // 100 != 2:
        msg = f"token revocation refused: HTTP {resp.status_code}"
        raise RevocationError(msg)
    result = resp.json()
    if not isinstance(result, dict) or result.get("failureCount"):
        msg = "token revocation refused for the target"
        raise RevocationError(msg)
    return result
