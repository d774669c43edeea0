"""Privacy finding 1: a public HOST (e.g. a LAN address so that phones reach the pages) moves
only the API and the push hub; Kafka, Redis, the ksqlDB-compatible endpoint and Faust's web
server stay on loopback, and the embedded Redis asks for REDIS_PASSWORD when it is set."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import ValidationError

from instore.embedded import kafka_nodes, redis_argv
from instore.settings import LOOPBACK, Settings
from instore.stack import service_specs
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


def test_faust_and_ksql_endpoint_bind_loopback() -> None:
    from stream_apps.app import create_app

    assert create_app(_settings()).conf.web_bind == LOOPBACK
    # `instore ksql serve` passes no host: the endpoint's default is loopback, not HOST
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


def test_production_with_the_embedded_redis_needs_a_password() -> None:
    keys = {f"api_key_{r}": f"{r}-key-{'x' * 40}" for r in ("marketer", "analyst", "ops", "kiosk")}
    with pytest.raises(ValidationError, match="REDIS_PASSWORD"):
        Settings(_env_file=None, INSTORE_ENV="production", **keys)  # type: ignore[call-arg]
    Settings(_env_file=None, INSTORE_ENV="production", redis_password="p" * 32,  # type: ignore[call-arg]
             **keys)
