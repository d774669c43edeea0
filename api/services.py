"""What the API's routes share: settings, the Redis serving store, the Kafka publisher, the
in-memory table view and the Ably client (for token requests). Built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from ably import AblyRest

from api.publisher import Publisher
from api.tables import TableView
from instore.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    publisher: Publisher
    tables: TableView
    ably: AblyRest
    counters: dict[str, int] = field(default_factory=dict)


def ably_client(settings: Settings) -> AblyRest:
    """An Ably REST client for token requests: signing needs the key only, no network call."""
    if settings.push_hub_local:  # the hub serves https when TLS_CERT_FILE/TLS_KEY_FILE are set
        if settings.uvicorn_tls():
            return AblyRest(key=settings.ably_key, rest_host=settings.host,
                            tls_port=settings.hub_port, tls=True)
        return AblyRest(key=settings.ably_key, rest_host=settings.host, port=settings.hub_port,
                        tls=False)
    options: dict[str, object] = {}
    if settings.ably_rest_host:
        options["rest_host"] = settings.ably_rest_host
    if settings.ably_port:
        options["port" if settings.ably_tls is False else "tls_port"] = settings.ably_port
    if settings.ably_tls is not None:
        options["tls"] = settings.ably_tls
    return AblyRest(key=settings.ably_key, **options)
