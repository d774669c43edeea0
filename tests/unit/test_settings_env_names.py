"""Generic environment names carry the project's prefix (INSTORE_HOST, INSTORE_DATA_DIR,
INSTORE_APP_ID, INSTORE_ENV); the standard ones (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, ...) stay;
and settings survive a model_dump -> model_validate round trip (children and benchmarks copy
settings that way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from instore.settings import Settings


def test_prefixed_names_are_read_and_generic_ones_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("HOST", "10.9.9.9"), ("DATA_DIR", "/nope"), ("APP_ID", "nope")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INSTORE_HOST", "192.168.1.20")
    monkeypatch.setenv("INSTORE_DATA_DIR", "/srv/instore")
    monkeypatch.setenv("INSTORE_APP_ID", "store-7-stream")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.host, s.data_dir, s.app_id) == ("192.168.1.20", Path("/srv/instore"),
                                             "store-7-stream")
    assert s.bootstrap_servers == "127.0.0.1:9092"


def test_round_trip_keeps_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INSTORE_HOST", "INSTORE_DATA_DIR", "INSTORE_APP_ID", "INSTORE_ENV"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None, host="192.168.1.20", app_id="a1",  # type: ignore[call-arg]
                 data_dir=Path("/srv/x"), environment="development")
    again = Settings.model_validate(s.model_dump())
    assert again.model_dump() == s.model_dump()
    assert (again.host, again.app_id, again.data_dir) == ("192.168.1.20", "a1", Path("/srv/x"))
