"""Where the `ably` SDK talks to: the local push hub (embedded default) or Ably itself.

The sink code is the same for both; only host, port and TLS differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def page_config(settings: Settings) -> dict[str, Any]:
    """What the phone and kiosk pages read from ``/config.json``."""
    where = target(settings)
    return {
        "api_url": f"{settings.public_scheme()}://{settings.host}:{settings.api_port}",
        "mode": where.mode,
        "hub_url": "" if where.mode == "hub" else None,
        "rewind": 20,
        "rest_host": where.rest_host if where.mode == "ably" else None,
        # ably-js (Realtime over WebSocket) in both modes: the hub speaks Ably's realtime
        # protocol on the page's own host and port. "sse" = the hub's Server-Sent Events
        # stream, which the pages also fall back to when ably-js is not installed.
        "transport": "ably-js",
        # Nothing secret: a kiosk is provisioned once with `/kiosk?...&key=<kiosk key>`, which
        # the page keeps in its own storage.
    }
