"""Privacy finding 1: a public INSTORE_HOST (e.g. a LAN address so that phones reach the pages) moves
only the API and the push hub; Kafka, Redis, the ksqlDB-compatible endpoint and Faust's web
server stay on loopback, and the embedded Redis asks for REDIS_PASSWORD when it is set."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import ValidationError

from instore.embedded import kafka_nodes, redis_argv
from instore.embedded.services import service_specs
from instore.settings import DEV_KEYS, LOOPBACK, Settings
from stream_apps.ksqldb import server

PUBLIC = "192.0.2.10"  # TEST-NET-1: never routed, only compared here


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, host=PUBLIC, **kw)  # type: ignore[call-arg]


def test_internal_services_bind_loopback_whatever_host_says(tmp_path: Path) -> None:
    settings = _settings()
    specs = {s.name: s for s in service_specs(settings, tmp_path)}
    for name in ("broker", "redis", "ksql"):
        assert specs[name].host == LOOPBACK, name
    for name in ("api", "hub"):
        assert specs[name].host == PUBLIC, name
    redis = specs["redis"].argv
    assert redis[redis.index("--bind") + 1] == LOOPBACK
    assert redis[redis.index("--protected-mode") + 1] == "yes"
    props = kafka_nodes(settings, tmp_path)[0].properties()
    assert all(f"//{LOOPBACK}:" in listener for listener in props["listeners"].split(","))
    assert settings.bootstrap_servers.startswith(f"{LOOPBACK}:")
    assert settings.redis_address.startswith(f"redis://{LOOPBACK}:")
    assert settings.ksqldb_address.startswith(f"http://{LOOPBACK}:")


def test_faust_and_ksql_endpoint_bind_loopback(tmp_path: Path) -> None:
    from stream_apps.app import _faust_app

    # the bare Faust app (the worker's producers start with its agents, not here)
    app = _faust_app(Settings(data_dir=tmp_path, host=PUBLIC))
    assert app.conf.web_bind == LOOPBACK and not app.conf.web_enabled
    # `instore ksql serve` passes no host: the endpoint's default is loopback, not INSTORE_HOST
    assert "host or LOOPBACK" in inspect.getsource(server.serve)


def test_embedded_redis_requires_the_password_from_the_settings(tmp_path: Path) -> None:
    settings = _settings(redis_password="a-redis-password-of-some-length")
    assert settings.redis_address == (
        f"redis://:a-redis-password-of-some-length@{LOOPBACK}:{settings.redis_port}/0")
    argv = redis_argv(6390, tmp_path, password="a-redis-password-of-some-length")
    conf = Path(argv[1])
    assert conf.read_text() == "requirepass a-redis-password-of-some-length\n"
    assert conf.stat().st_mode & 0o077 == 0  # readable by this user only
    assert "a-redis-password-of-some-length" not in " ".join(argv)  # not visible in `ps`


def _production(**kw: object) -> Settings:
    keys: dict[str, object] = {f"api_key_{r}": f"{r}-key-{'x' * 40}"
                               for r in DEV_KEYS}
    keys |= {"shopper_token_secret": "s" * 40, "redis_password": "p" * 32}
    return Settings(_env_file=None, INSTORE_ENV="production", **(keys | kw))  # type: ignore[call-arg]


@pytest.mark.parametrize(("field", "value", "named"), [
    ("api_key_kiosk", "dev-kiosk-key", "API_KEY_KIOSK"),
    ("api_key_cashier", "dev-cashier-key", "API_KEY_CASHIER"),
    ("api_key_cashier", None, "API_KEY_CASHIER"),
    ("api_key_marketer", "short-but-not-dev", "API_KEY_MARKETER"),
    ("api_key_ops", None, "API_KEY_OPS"),
    ("shopper_token_secret", "dev-shopper-token-secret", "SHOPPER_TOKEN_SECRET"),
    ("shopper_token_secret", None, "SHOPPER_TOKEN_SECRET"),
    ("ably_api_key", "instore-dev.embedded:dev-secret-not-for-production", "ABLY_API_KEY"),
    ("redis_password", None, "REDIS_PASSWORD"),
    ("redis_password", "too-short", "REDIS_PASSWORD"),
])
def test_production_refuses_development_values_and_short_keys(field: str, value: object,
                                                              named: str) -> None:
    """Privacy finding 4: production fails closed instead of falling back to dev secrets."""
    _production()  # everything strong: accepted
    with pytest.raises(ValidationError, match=named):
        _production(**{field: value})


def test_production_refuses_a_plaintext_broker_off_this_machine() -> None:
    """Privacy finding 5: production talks to a remote Kafka over TLS only."""
    with pytest.raises(ValidationError, match="refuses KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        _production(kafka_bootstrap_servers="kafka.store.lan:9092")
    with pytest.raises(ValidationError, match="SASL_PLAINTEXT"):
        _production(kafka_bootstrap_servers="10.0.0.5:9092",
                    kafka_security_protocol="SASL_PLAINTEXT")
    _production(kafka_bootstrap_servers="kafka.store.lan:9093", kafka_security_protocol="SSL")
    _production()  # the embedded broker: on loopback only


def test_no_page_config_carries_a_secret() -> None:
    """Privacy finding 4: /config.json (CORS *) holds no key of any kind."""
    from mobile_push.pages import page_config

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    config = page_config(settings)
    secrets = {settings.api_key(role) for role in DEV_KEYS}
    secrets |= {settings.ably_key, settings.shopper_secret.decode()}
    assert not [k for k in config if "key" in k.lower() or "secret" in k.lower()], config
    assert not secrets & {str(v) for v in config.values()}
